"""Admin pages: tiers change from the web, and a key's tier follows its owner's."""

from __future__ import annotations

from sqlalchemy import select
from support.rows import audit_events, snapshot
from support.web import csrf_token, public_id_of

from app.extensions import db
from app.models import User


def _user_id(app, email: str) -> int:
    with app.app_context():
        return db.session.scalar(select(User.id).where(User.email == email))


def _tier(app, email: str) -> str:
    with app.app_context():
        return db.session.scalar(select(User.tier).where(User.email == email))


def test_admin_sees_users_and_keys(app, admin, user):
    user.create_key(name="alice-key")
    users = admin.client.get("/admin/users")
    assert users.status_code == 200
    assert "alice@example.com" in users.get_data(as_text=True)
    keys = admin.client.get("/admin/keys").get_data(as_text=True)
    assert "alice-key" in keys


def test_admin_changes_a_tier_and_every_key_follows(app, admin, user, client):
    _, plaintext = user.create_key()
    assert client.post("/api/v1/keys/validate", json={"key": plaintext}).json["tier"] == "basic"
    uid = _user_id(app, "alice@example.com")
    resp = admin.submit(f"/admin/users/{uid}", {"tier": "premium"})
    assert resp.status_code == 302
    assert "Tier set to premium." in admin.client.get(f"/admin/users/{uid}").get_data(as_text=True)
    assert _tier(app, "alice@example.com") == "premium"
    body = client.post("/api/v1/keys/validate", json={"key": plaintext}).json
    assert body["tier"] == "premium"
    # The new cap applies to the next key at once.
    assert "up to 180 days" in client.get("/keys/new").get_data(as_text=True)
    events = audit_events(app, "user.tier_changed", f"user:{uid}")
    assert len(events) == 1
    assert events[0].sensitivity == "high"
    assert events[0].actor == f"user:{_user_id(app, 'root@example.com')}"


def test_setting_the_same_tier_changes_nothing(app, admin, user):
    uid = _user_id(app, "alice@example.com")
    before = snapshot(app)
    resp = admin.submit(f"/admin/users/{uid}", {"tier": "basic"})
    assert resp.status_code == 302
    assert snapshot(app) == before


def test_unknown_tier_is_rejected(app, admin, user):
    uid = _user_id(app, "alice@example.com")
    before = snapshot(app)
    for bad in ("platinum", "", "BASIC", "basic " * 100):
        resp = admin.submit(f"/admin/users/{uid}", {"tier": bad})
        assert resp.status_code == 400, bad
    assert _tier(app, "alice@example.com") == "basic"
    assert snapshot(app) == before


def test_tier_change_on_a_missing_user_is_404(app, admin):
    page = admin.client.get("/admin/users").get_data(as_text=True)
    before = snapshot(app)
    for path in (
        "/admin/users/999999",
        "/admin/users/0",
        "/admin/users/-1",
        "/admin/users/x",
        "/admin/users/99999999999999999999999",
        "/admin/users/2147483648",
    ):
        resp = admin.client.post(path, data={"csrf_token": csrf_token(page), "tier": "premium"})
        assert resp.status_code == 404, path
        assert admin.client.get(path).status_code == 404, path
    assert snapshot(app) == before


def test_tier_change_needs_csrf(app, admin, user):
    uid = _user_id(app, "alice@example.com")
    before = snapshot(app)
    resp = admin.client.post(f"/admin/users/{uid}", data={"tier": "enterprise"})
    assert resp.status_code == 400
    assert _tier(app, "alice@example.com") == "basic"
    assert snapshot(app) == before


def test_admin_pages_never_show_a_secret(app, admin, user):
    _, plaintext = user.create_key()
    secret = plaintext.split(".")[2]
    uid = _user_id(app, "alice@example.com")
    for path in ("/admin/users", "/admin/keys", f"/admin/users/{uid}", "/admin/audit"):
        html = admin.client.get(path).get_data(as_text=True)
        assert secret not in html, path
        assert public_id_of(plaintext) in html or path in ("/admin/users",), path
