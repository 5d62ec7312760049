"""Where loopback and private receivers are refused, the form and the README say how
to allow them (issue 18)."""

from __future__ import annotations

from pathlib import Path

from .test_webhooks import _endpoints, registered

SWITCH = "WEBHOOK_ALLOW_PRIVATE=true"


def test_the_forms_hint_names_the_switch(app, user, receiver):
    page = user.client.get("/account/webhooks").get_data(as_text=True)
    assert SWITCH in page and 'id="url-hint"' in page
    registered(user, receiver.url)
    [endpoint] = _endpoints(app)
    edit = user.client.get(f"/account/webhooks/{endpoint.public_id}").get_data(as_text=True)
    assert SWITCH in edit


def test_the_readme_names_the_switch():
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert SWITCH in readme and "/account/webhooks" in readme
