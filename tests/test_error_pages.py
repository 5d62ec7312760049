"""Error pages speak the product's language (issue 18): what happened and what to do
next, never Werkzeug's "the requested URL ... on the server"; a message our own code
wrote is kept; a server fault shows the request id to quote."""

from __future__ import annotations

import pytest

WERKZEUG_WORDS = ("requested URL", "the server", "read-protected", "method is not allowed")


def _page(resp) -> str:
    text = resp.get_data(as_text=True)
    for words in WERKZEUG_WORDS:
        assert words not in text, words
    assert "Back to Keyledger" in text
    return text


def test_an_unknown_address_is_page_not_found(client):
    resp = client.get("/no-such-page")
    assert resp.status_code == 404
    text = _page(resp)
    assert "<h1>Page not found</h1>" in text
    assert "address may be mistyped" in text


def test_a_wrong_method_says_to_use_the_buttons(user):
    resp = user.client.get("/logout")
    assert resp.status_code == 405
    assert "Not available that way" in _page(resp)


def test_a_user_on_the_admin_area_is_told_it_is_not_for_their_account(user):
    resp = user.client.get("/admin/")
    assert resp.status_code == 403
    text = _page(resp)
    assert "Not for this account" in text and "ask an admin" in text


def test_our_own_message_is_kept(admin):
    resp = admin.client.get("/admin/audit?since=yesterday")
    assert resp.status_code == 400
    text = _page(resp)
    assert "since must be a date (YYYY-MM-DD) or date and time (UTC)." in text


@pytest.mark.parametrize("path", ["/no-such-page", "/api/v1/no-such-endpoint"])
def test_the_api_keeps_its_json(client, path):
    resp = client.get(path)
    if path.startswith("/api/"):
        assert resp.status_code == 404 and resp.json["error"] == "not_found"
    else:
        assert resp.mimetype == "text/html"


def test_a_server_fault_shows_the_request_id_to_quote(app, client):
    def boom():
        raise RuntimeError("secret internals")

    app.add_url_rule("/probe-fault", "probe_fault", boom)
    resp = client.get("/probe-fault", headers={"X-Request-Id": "quote-me-123"})
    assert resp.status_code == 500
    text = _page(resp)
    assert "secret internals" not in text
    assert "nothing was changed" in text
    rid = resp.headers["X-Request-Id"]
    assert f"Reference: <code>{rid}</code>" in text
