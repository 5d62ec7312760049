"""The key-authenticated API has no portal session: a logged-in browser's cookie neither
authenticates an API call nor gets re-set by one, and the portal keeps its session."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient

URL = "/api/v1/keys/validate"


def test_portal_cookie_does_not_authenticate_the_api_and_is_not_reset(
    client: FlaskClient, user: Any
) -> None:
    _resp, plaintext = user.create_key(scopes=("keys:read",))
    assert plaintext is not None

    anonymous = client.get("/api/v1/keys")  # logged in to the portal, but no key
    assert anonymous.status_code == 401
    assert anonymous.json["error"] == "missing_key"
    assert "Set-Cookie" not in anonymous.headers

    valid = client.post(URL, json={"key": plaintext})
    assert valid.status_code == 200
    assert valid.json["valid"] is True
    assert "Set-Cookie" not in valid.headers

    listed = client.get("/api/v1/keys", headers={"Authorization": f"Bearer {plaintext}"})
    assert listed.status_code == 200
    assert "Set-Cookie" not in listed.headers

    page = client.get("/keys")  # the browser is still logged in to the portal
    assert page.status_code == 200
    assert "ci" in page.get_data(as_text=True)
