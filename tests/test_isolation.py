"""Two users: neither sees nor changes the other's keys, and every attempt is on record."""

from __future__ import annotations

import pytest
from support.rows import audit_events, key_row, snapshot
from support.web import csrf_token, public_id_of


def _attempts(bob, pid: str):
    page = bob.client.get("/keys").get_data(as_text=True)
    token = csrf_token(page)
    return {
        "detail": lambda: bob.client.get(f"/keys/{pid}"),
        "revoke": lambda: bob.client.post(
            f"/keys/{pid}/revoke", data={"csrf_token": token, "confirm": "y"}
        ),
        "rotate": lambda: bob.client.post(
            f"/keys/{pid}/rotate", data={"csrf_token": token, "grace": "now"}
        ),
    }


@pytest.mark.parametrize("route", ["detail", "revoke", "rotate"])
def test_another_users_key_answers_404_changes_nothing_and_is_audited(
    app, user, other, client, route
):
    _, plaintext = user.create_key(name="alice's key")
    pid = public_id_of(plaintext)
    stored = key_row(app, pid)
    before = snapshot(app)

    resp = _attempts(other, pid)[route]()

    assert resp.status_code == 404
    html = resp.get_data(as_text=True)
    assert "alice's key" not in html and "alice&#39;s key" not in html
    after_row = key_row(app, pid)
    assert after_row.revoked_at is None
    assert after_row.expires_at == stored.expires_at
    after = snapshot(app)
    assert after["api_key"] == before["api_key"]
    assert after["user"] == before["user"]
    assert after["audit_event"] == before["audit_event"] + 1
    events = audit_events(app, "access.unauthorized", f"key:{pid}")
    assert len(events) == 1
    event = events[0]
    assert event.sensitivity == "critical"
    assert event.outcome == "denied"
    assert event.actor.startswith("user:") and event.actor != f"user:{stored.user_id}"
    # Alice's key still works.
    assert client.post("/api/v1/keys/validate", json={"key": plaintext}).status_code == 200


def test_an_unknown_key_id_is_the_same_404_but_not_an_intrusion(app, user, other):
    _, plaintext = user.create_key()
    other.client.get("/keys")  # shows (and so clears) bob's welcome message
    real = other.client.get(f"/keys/{public_id_of(plaintext)}")
    missing = other.client.get("/keys/AAAAAAAAAAAA")
    assert real.status_code == missing.status_code == 404
    assert real.get_data() == missing.get_data()
    assert audit_events(app, "access.unauthorized", "key:AAAAAAAAAAAA") == []


def test_lists_do_not_leak_across_users(app, user, other):
    _, alice_key = user.create_key(name="alice-only")
    _, bob_key = other.create_key(name="bob-only")
    alice_page = user.client.get("/keys").get_data(as_text=True)
    bob_page = other.client.get("/keys").get_data(as_text=True)
    assert "bob-only" not in alice_page and public_id_of(bob_key) not in alice_page
    assert "alice-only" not in bob_page and public_id_of(alice_key) not in bob_page


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/admin/"),
        ("GET", "/admin/users"),
        ("GET", "/admin/keys"),
        ("GET", "/admin/audit"),
        ("GET", "/admin/users/1"),
        ("POST", "/admin/users/1"),
    ],
)
def test_non_admin_gets_403_on_admin_pages_and_is_audited(app, user, method, path):
    page = user.client.get("/keys").get_data(as_text=True)
    before = snapshot(app)
    if method == "GET":
        resp = user.client.get(path)
    else:
        resp = user.client.post(path, data={"csrf_token": csrf_token(page), "tier": "enterprise"})
    assert resp.status_code == 403
    assert "Not for this account" in resp.get_data(as_text=True)
    events = audit_events(app, "access.unauthorized", path)
    assert len(events) == 1
    assert events[0].sensitivity == "critical"
    assert events[0].outcome == "denied"
    after = snapshot(app)
    assert after["audit_event"] == before["audit_event"] + 1
    assert after["user"] == before["user"] and after["api_key"] == before["api_key"]
    assert "tier-basic" in user.client.get("/keys").get_data(as_text=True)


def test_anonymous_visitors_are_sent_to_login_from_every_private_page(app, user, client):
    _, plaintext = user.create_key()
    pid = public_id_of(plaintext)
    user.logout()
    for path in ("/keys", "/keys/new", f"/keys/{pid}", "/admin/", "/admin/audit"):
        resp = client.get(path)
        assert resp.status_code == 302, path
        assert resp.headers["Location"].startswith("/login"), path
