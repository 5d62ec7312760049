"""Passkey endpoints given nonsense: a clear 4xx, nothing stored, never a 500. The
ceremonies themselves run in Chromium with a virtual authenticator
(tests/e2e/test_two_factor.py)."""

from __future__ import annotations

import json

import pytest
from support.rows import audit_events, count_rows
from support.web import PASSWORD, csrf_token

BODIES = [
    None,
    "not json",
    json.dumps([1, 2]),
    json.dumps({"name": "x"}),
    json.dumps({"name": 5, "credential": {}}),
    json.dumps({"name": "x", "credential": {"id": "AA", "rawId": "AA", "response": {}}}),
    json.dumps({"name": "x" * 10_000, "credential": {"id": "\x00"}}),
    json.dumps(
        {
            "credential": {
                "id": "AA",
                "rawId": "AA",
                "type": "public-key",
                "response": {"clientDataJSON": "e30", "authenticatorData": "AA", "signature": "AA"},
            }
        }
    ),
]


def _post(client, url, body, token):
    return client.post(
        url,
        data=body,
        headers={"Content-Type": "application/json", "X-CSRFToken": token},
    )


@pytest.mark.parametrize("body", BODIES)
def test_registration_answers_refuse_nonsense(app, user, client, body):
    token = csrf_token(client.get("/account/two-factor").get_data(as_text=True))
    options = _post(client, "/account/passkeys/options", "{}", token)
    assert options.status_code == 200 and "challenge" in options.get_json()
    resp = _post(client, "/account/passkeys", body, token)
    assert resp.status_code == 400 and resp.get_json()["error"]
    assert count_rows(app, "passkey") == 0 and count_rows(app, "recovery_code") == 0


def test_registration_without_options_first_is_refused(app, user, client):
    token = csrf_token(client.get("/account/two-factor").get_data(as_text=True))
    resp = _post(client, "/account/passkeys", json.dumps({"name": "x", "credential": {}}), token)
    assert resp.status_code == 400 and "took too long" in resp.get_json()["error"]


@pytest.mark.parametrize("body", BODIES)
def test_login_answers_refuse_nonsense(app, client, body):
    token = csrf_token(client.get("/login").get_data(as_text=True))
    options = _post(client, "/login/passkey/options", "{}", token)
    assert options.status_code == 200
    assert options.get_json()["userVerification"] == "required"
    resp = _post(client, "/login/passkey", body, token)
    assert resp.status_code == 400
    assert client.get("/keys").status_code == 302


def test_passkey_endpoints_need_the_csrf_token(app, user, client):
    resp = client.post("/account/passkeys/options", json={})
    assert resp.status_code == 400


def test_removing_someone_elses_passkey_is_refused(app, user, client):
    page = client.get("/account/two-factor").get_data(as_text=True)
    resp = client.post(
        "/account/passkeys/99/remove", data={"csrf_token": csrf_token(page), "password": PASSWORD}
    )
    assert resp.status_code == 302
    assert "not yours" in client.get("/account/two-factor").get_data(as_text=True)
    assert not audit_events(app, "user.passkey_removed")
