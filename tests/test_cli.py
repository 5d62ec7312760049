"""`flask users ...`: bootstrap the first admin from the shell, change tiers."""

from __future__ import annotations

from sqlalchemy import select
from support.rows import audit_events, snapshot
from support.web import PASSWORD, Portal

from app.extensions import db
from app.models import User


def _user(app, email: str) -> User | None:
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == email))
        if user is not None:
            db.session.expunge(user)
        return user


def test_users_create_admin_reads_the_password_from_stdin(app, runner):
    result = runner.invoke(
        args=["users", "create", "Root@Example.com", "--admin", "--tier", "enterprise"],
        input=PASSWORD + "\n",
    )
    assert result.exit_code == 0, result.output
    assert "created admin root@example.com" in result.output
    assert "tier enterprise" in result.output
    assert PASSWORD not in result.output
    user = _user(app, "root@example.com")
    assert user.is_admin and user.tier == "enterprise"
    assert user.password_hash.startswith("$argon2id$")
    # The new admin can log in and reach the admin pages.
    root = Portal(app.test_client())
    assert root.login("root@example.com").status_code == 302
    assert root.client.get("/admin/users").status_code == 200
    event = audit_events(app, "user.created", f"user:{user.id}")
    assert len(event) == 1 and event[0].actor == "cli"
    assert PASSWORD not in event[0].details


def test_users_create_defaults_to_a_basic_non_admin(app, runner):
    result = runner.invoke(args=["users", "create", "plain@example.com"], input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    user = _user(app, "plain@example.com")
    assert not user.is_admin and user.tier == "basic"


def test_users_create_keeps_spaces_inside_a_passphrase(app, runner):
    phrase = "  spaces around and inside  "
    result = runner.invoke(args=["users", "create", "sp@example.com"], input=phrase + "\r\n")
    assert result.exit_code == 0, result.output
    assert Portal(app.test_client()).login("sp@example.com", phrase).status_code == 302


def test_users_create_rejects_a_short_password(app, runner):
    before = snapshot(app)
    result = runner.invoke(args=["users", "create", "short@example.com"], input="too short\n")
    assert result.exit_code == 1
    assert "Password must be at least 12 characters." in result.output
    assert snapshot(app) == before


def test_users_create_rejects_no_password_at_all(app, runner):
    before = snapshot(app)
    result = runner.invoke(args=["users", "create", "none@example.com"], input="")
    assert result.exit_code == 1
    assert "at least 12 characters" in result.output
    assert snapshot(app) == before


def test_users_create_rejects_a_duplicate(app, runner):
    args = ["users", "create", "dup@example.com"]
    assert runner.invoke(args=args, input=PASSWORD + "\n").exit_code == 0
    before = snapshot(app)
    result = runner.invoke(args=["users", "create", "DUP@example.com"], input=PASSWORD + "\n")
    assert result.exit_code == 1
    assert "already exists" in result.output
    assert snapshot(app) == before


def test_users_create_rejects_a_bad_email_and_tier(app, runner):
    before = snapshot(app)
    bad_email = runner.invoke(args=["users", "create", "not-an-email"], input=PASSWORD + "\n")
    assert bad_email.exit_code == 1 and "valid email" in bad_email.output
    bad_tier = runner.invoke(
        args=["users", "create", "t@example.com", "--tier", "gold"], input=PASSWORD + "\n"
    )
    assert bad_tier.exit_code == 2 and "gold" in bad_tier.output
    assert snapshot(app) == before


def test_users_set_tier(app, runner, user, client):
    _, plaintext = user.create_key()
    result = runner.invoke(args=["users", "set-tier", "alice@example.com", "premium"])
    assert result.exit_code == 0, result.output
    assert "alice@example.com: tier premium" in result.output
    assert _user(app, "alice@example.com").tier == "premium"
    assert client.post("/api/v1/keys/validate", json={"key": plaintext}).json["tier"] == "premium"
    same = runner.invoke(args=["users", "set-tier", "alice@example.com", "premium"])
    assert same.exit_code == 0 and "(unchanged)" in same.output
    assert len(audit_events(app, "user.tier_changed")) == 1


def test_users_set_tier_errors(app, runner, user):
    before = snapshot(app)
    missing = runner.invoke(args=["users", "set-tier", "ghost@example.com", "premium"])
    assert missing.exit_code == 1 and "no account for ghost@example.com" in missing.output
    bad = runner.invoke(args=["users", "set-tier", "alice@example.com", "gold"])
    assert bad.exit_code == 2
    assert _user(app, "alice@example.com").tier == "basic"
    assert snapshot(app) == before
