"""Admin control of accounts: disable / enable, grant / remove admin; the CLI for them."""

from __future__ import annotations

from sqlalchemy import select
from support.rows import audit_events, key_row, snapshot
from support.web import OTHER_PASSWORD, PASSWORD, Portal, public_id_of

from app.extensions import db
from app.models import User, UserSession

NEW_PASSWORD = "reset by the operator 2026"


def user_id(app, email: str) -> int:
    with app.app_context():
        return db.session.scalar(select(User.id).where(User.email == email))


def get_user(app, email: str) -> User:
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == email))
        db.session.expunge(user)
        return user


def sessions_of(app, email: str) -> int:
    with app.app_context():
        return len(
            db.session.scalars(select(UserSession.id).join(User).where(User.email == email)).all()
        )


def validate(client, key: str) -> int:
    return client.post("/api/v1/keys/validate", json={"key": key}).status_code


def disable(admin: Portal, uid: int, **extra):
    return admin.submit(
        f"/admin/users/{uid}", {"confirm": "y", **extra}, action=f"/admin/users/{uid}/disable"
    )


def test_disable_revokes_every_key_ends_sessions_and_blocks_login(app, admin, user, client):
    _, one = user.create_key("one")
    _, two = user.create_key("two")
    _, gone = user.create_key("already revoked")
    user.submit(
        f"/keys/{public_id_of(gone)}", {"confirm": "y"}, action=f"/keys/{public_id_of(gone)}/revoke"
    )
    assert validate(client, one) == 200
    uid = user_id(app, "alice@example.com")
    page = admin.client.get(f"/admin/users/{uid}").get_data(as_text=True)
    assert "Disable account" in page

    resp = disable(admin, uid)
    assert resp.status_code == 302
    assert "is disabled" in admin.client.get(f"/admin/users/{uid}").get_data(as_text=True)
    for key in (one, two):
        assert key_row(app, public_id_of(key)).revoked_at is not None
        assert validate(client, key) == 401
    assert client.get("/keys").status_code == 302  # her browser is logged out
    assert sessions_of(app, "alice@example.com") == 0
    (event,) = audit_events(app, "user.disabled")
    assert (
        event.sensitivity == "critical"
        and event.actor == f"user:{user_id(app, 'root@example.com')}"
    )
    assert '"keys_revoked":2' in event.details
    revoked = audit_events(app, "key.revoked")
    assert len(revoked) == 3  # her own revoke, then one per live key
    assert sum("disabled by an administrator" in e.details for e in revoked) == 2

    resp = user.login("alice@example.com")
    assert resp.status_code == 400
    assert "An administrator disabled this account" in resp.get_data(as_text=True)
    # A wrong password still says only the usual thing.
    wrong = user.login("alice@example.com", "not her password at all")
    assert "Email or password is wrong." in wrong.get_data(as_text=True)


def test_enable_lets_the_user_back_in_with_keys_still_revoked(app, admin, user, client):
    _, key = user.create_key("one")
    uid = user_id(app, "alice@example.com")
    disable(admin, uid)
    resp = admin.submit(f"/admin/users/{uid}", {}, action=f"/admin/users/{uid}/enable")
    assert resp.status_code == 302
    assert user.login("alice@example.com").status_code == 302
    assert validate(client, key) == 401
    (event,) = audit_events(app, "user.enabled")
    assert event.sensitivity == "critical"


def test_disable_needs_an_admin_a_csrf_token_and_the_box(app, admin, user, other):
    uid = user_id(app, "alice@example.com")
    before = snapshot(app)
    # bob is no admin: 403, audited as unauthorized, nothing else changes
    assert disable(other, uid).status_code == 403
    # (the page he fetched the form from, and the post)
    assert len(audit_events(app, "access.unauthorized")) == 2
    assert (
        admin.client.post(f"/admin/users/{uid}/disable", data={"confirm": "y"}).status_code == 400
    )
    assert disable(admin, uid, confirm="").status_code == 302  # no box ticked
    assert get_user(app, "alice@example.com").disabled_at is None
    assert snapshot(app)["api_key"] == before["api_key"]
    assert audit_events(app, "user.disabled") == []
    for bad in ("999", "99999999999999999999"):
        resp = admin.submit(
            f"/admin/users/{uid}", {"confirm": "y"}, action=f"/admin/users/{bad}/disable"
        )
        assert resp.status_code == 404


def test_grant_and_remove_admin_but_the_last_admin_stays(app, admin, other):
    root = user_id(app, "root@example.com")
    bob = user_id(app, "bob@example.com")
    resp = admin.submit(f"/admin/users/{root}", {}, action=f"/admin/users/{root}/admin/remove")
    assert resp.status_code == 302
    page = admin.client.get(f"/admin/users/{root}").get_data(as_text=True)
    assert "last admin" in page
    assert get_user(app, "root@example.com").is_admin

    admin.submit(
        f"/admin/users/{bob}", {"confirm_grant": "y"}, action=f"/admin/users/{bob}/admin/grant"
    )
    assert get_user(app, "bob@example.com").is_admin
    assert other.client.get("/admin/").status_code == 200
    admin.submit(f"/admin/users/{root}", {}, action=f"/admin/users/{root}/admin/remove")
    assert not get_user(app, "root@example.com").is_admin
    assert admin.client.get("/admin/").status_code == 403
    # bob is now the last admin: neither removing nor disabling him is allowed
    other.submit(f"/admin/users/{bob}", {}, action=f"/admin/users/{bob}/admin/remove")
    assert get_user(app, "bob@example.com").is_admin
    events = audit_events(app)
    granted = [e for e in events if e.action == "user.admin_granted"]
    removed = [e for e in events if e.action == "user.admin_removed"]
    assert len(granted) == 1 and len(removed) == 1
    assert {e.sensitivity for e in granted + removed} == {"critical"}


def test_cli_list_disable_enable(app, runner, admin, user):
    user.create_key("one")
    listed = runner.invoke(args=["users", "list"])
    assert listed.exit_code == 0, listed.output
    line = next(x for x in listed.output.splitlines() if "alice@example.com" in x)
    assert "active" in line and line.split()[-2:] == ["1", "1"]
    result = runner.invoke(args=["users", "disable", "alice@example.com"])
    assert result.exit_code == 0 and "1 key(s) revoked" in result.output
    assert user.client.get("/keys").status_code == 302
    line = next(
        x for x in runner.invoke(args=["users", "list"]).output.splitlines() if "alice" in x
    )
    assert "disabled" in line
    assert runner.invoke(args=["users", "enable", "alice@example.com"]).exit_code == 0
    assert user.login("alice@example.com").status_code == 302
    assert audit_events(app, "user.disabled")[0].actor == "cli"


def test_cli_set_admin_and_the_last_admin(app, runner, admin, user):
    last = runner.invoke(args=["users", "set-admin", "root@example.com", "--remove"])
    assert last.exit_code == 1 and "last admin" in last.output
    last = runner.invoke(args=["users", "disable", "root@example.com"])
    assert last.exit_code == 1 and "last admin" in last.output
    assert get_user(app, "root@example.com").is_admin
    assert runner.invoke(args=["users", "set-admin", "alice@example.com"]).exit_code == 0
    assert get_user(app, "alice@example.com").is_admin
    done = runner.invoke(args=["users", "set-admin", "root@example.com", "--remove"])
    assert done.exit_code == 0 and not get_user(app, "root@example.com").is_admin
    missing = runner.invoke(args=["users", "set-admin", "ghost@example.com"])
    assert missing.exit_code == 1 and "no account" in missing.output


def test_cli_reset_password_ends_every_session(app, runner, user, client):
    result = runner.invoke(
        args=["users", "reset-password", "alice@example.com"], input=NEW_PASSWORD + "\n"
    )
    assert result.exit_code == 0, result.output
    assert NEW_PASSWORD not in result.output
    assert client.get("/keys").status_code == 302
    assert user.login("alice@example.com").status_code == 400
    assert user.login("alice@example.com", NEW_PASSWORD).status_code == 302
    (event,) = audit_events(app, "user.password_reset")
    assert event.sensitivity == "high" and NEW_PASSWORD not in event.details
    short = runner.invoke(args=["users", "reset-password", "alice@example.com"], input="short\n")
    assert short.exit_code == 1
    assert OTHER_PASSWORD and PASSWORD
