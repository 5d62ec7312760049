"""An owner whose account an admin disabled hears that, not "a failed attempt, change
your password" (issue 18): at the refused log-in, and at the first log-in after the
account is enabled again, with the news that the revoked keys stay revoked."""

from __future__ import annotations

from sqlalchemy import select
from support.rows import audit_events
from support.web import Portal

from app.extensions import db
from app.models import User


def user_id(app, email: str) -> int:
    with app.app_context():
        return db.session.scalar(select(User.id).where(User.email == email))


def disable(admin: Portal, uid: int):
    return admin.submit(
        f"/admin/users/{uid}", {"confirm": "y"}, action=f"/admin/users/{uid}/disable"
    )


def test_the_refused_log_in_says_disabled_and_keys_revoked(app, admin, user):
    disable(admin, user_id(app, "alice@example.com"))
    resp = user.login("alice@example.com")
    assert resp.status_code == 400
    text = resp.get_data(as_text=True)
    assert "An administrator disabled this account on" in text
    assert "API keys were revoked" in text and "Ask an administrator to enable it" in text


def test_after_enabling_the_owner_is_told_what_happened_not_to_change_the_password(
    app, admin, user, client
):
    _, key = user.create_key("one")
    uid = user_id(app, "alice@example.com")
    disable(admin, uid)
    assert user.login("alice@example.com").status_code == 400  # tried while disabled
    admin.submit(f"/admin/users/{uid}", {}, action=f"/admin/users/{uid}/enable")

    resp = user.login("alice@example.com")
    assert resp.status_code == 302
    page = user.client.get(resp.headers["Location"]).get_data(as_text=True)
    assert "An administrator disabled your account on" in page
    assert "enabled it again on" in page
    assert "stay revoked" in page
    assert "failed log-in attempt" not in page and "change your password" not in page
    assert client.post("/api/v1/keys/validate", json={"key": key}).status_code == 401
    # The refused attempt is still on the trail, as a denial.
    assert [e.outcome for e in audit_events(app, "user.login_failed")] == ["denied"]

    # Told once: the next log-in is quiet.
    user.logout()
    resp = user.login("alice@example.com")
    page = user.client.get(resp.headers["Location"]).get_data(as_text=True)
    assert "disabled your account" not in page


def test_a_wrong_password_is_still_reported_as_a_failed_attempt(app, user):
    user.logout()
    user.login("alice@example.com", "not her password at all")
    resp = user.login("alice@example.com")
    page = user.client.get(resp.headers["Location"]).get_data(as_text=True)
    assert "1 failed log-in attempt" in page
    assert "disabled your account" not in page
