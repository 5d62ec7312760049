"""Accounts: NIST password rules, unique well-formed emails, argon2id with re-hashing."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from support.db import base_config
from support.rows import audit_events, count_rows, snapshot
from support.web import PASSWORD, Portal

from app import create_app
from app.extensions import db
from app.models import User


def _stored_hash(app, email: str) -> str:
    with app.app_context():
        return db.session.scalar(select(User.password_hash).where(User.email == email))


@pytest.mark.parametrize(
    "password",
    [
        pytest.param("a" * 12, id="12-chars-minimum"),
        pytest.param("a" * 1024, id="1024-chars-maximum"),
        pytest.param("all lowercase words", id="no-composition-rules"),
        pytest.param("pässwörd ünïcode ✓", id="unicode"),
    ],
)
def test_register_accepts_any_password_of_12_to_1024_characters(app, portal, password):
    resp = portal.register("new@example.com", password)
    assert resp.status_code == 302
    assert resp.headers["Location"] == "/keys"
    assert count_rows(app, "user") == 1
    stored = _stored_hash(app, "new@example.com")
    assert stored.startswith("$argon2id$")
    assert password not in stored
    # The password works for a fresh login.
    fresh = Portal(app.test_client())
    assert fresh.login("new@example.com", password).status_code == 302


@pytest.mark.parametrize(
    ("password", "message"),
    [
        pytest.param("a" * 11, "Use 12 to 1024 characters.", id="11-chars"),
        pytest.param("a" * 1025, "Use 12 to 1024 characters.", id="1025-chars"),
        pytest.param("", "Choose a password.", id="empty"),
    ],
)
def test_register_rejects_passwords_outside_the_length_rules(app, portal, password, message):
    before = snapshot(app)
    resp = portal.register("new@example.com", password)
    assert resp.status_code == 400
    assert message in resp.get_data(as_text=True)
    assert snapshot(app) == before


def test_register_rejects_mismatched_confirmation(app, portal):
    before = snapshot(app)
    resp = portal.submit(
        "/register",
        {"email": "new@example.com", "password": PASSWORD, "confirm": PASSWORD + "x"},
    )
    assert resp.status_code == 400
    assert "The two passwords differ." in resp.get_data(as_text=True)
    assert snapshot(app) == before


@pytest.mark.parametrize(
    "email",
    [
        "no-at-sign.example.com",
        "two@@example.com",
        "space in@example.com",
        "nodot@localhost",
        "trailing@example.",
        "@example.com",
        "nul\x00byte@example.com",
        "tab\t@example.com",
        ("x" * 250) + "@example.com",
        # Issue 22: markup and SQL fragments that a permissive regex took for addresses.
        'xss"><svg/onload=alert(1)>@ex<b>ample.com',
        "admin@example.com'--",
        "a@[127.0.0.1]",
        "x@-bad-.example.com",
    ],
)
def test_register_rejects_malformed_emails(app, portal, email):
    before = snapshot(app)
    resp = portal.register(email)
    assert resp.status_code == 400
    assert snapshot(app) == before


def test_the_cli_refuses_a_malformed_email(app, runner):
    before = snapshot(app)
    result = runner.invoke(
        args=["users", "create", "admin@example.com'--"], input="correct horse battery\n" * 2
    )
    assert result.exit_code != 0
    assert snapshot(app) == before


@pytest.mark.parametrize("email", ["a.b+tag@sub.example.co.uk", "üser@exämple.de"])
def test_register_accepts_ordinary_and_international_addresses(app, portal, email):
    assert portal.register(email).status_code == 302


def test_register_refuses_a_duplicate_email_in_any_case(app, portal):
    assert portal.register("dup@example.com").status_code == 302
    portal.logout()
    before = snapshot(app)
    resp = Portal(app.test_client()).register("  DUP@Example.com ")
    assert resp.status_code == 400
    assert "An account with this email already exists." in resp.get_data(as_text=True)
    assert snapshot(app) == before


def test_emails_are_stored_normalised(app, portal):
    assert portal.register("  Mixed.Case@Example.COM").status_code == 302
    with app.app_context():
        assert db.session.scalar(select(User.email)) == "mixed.case@example.com"


def test_login_rehashes_when_argon2_parameters_change(app, portal, tmp_path):
    assert portal.register("carol@example.com").status_code == 302
    old_hash = _stored_hash(app, "carol@example.com")
    assert "m=8,t=1,p=1" in old_hash

    stronger = create_app(
        {
            **base_config(tmp_path, app.config["SQLALCHEMY_DATABASE_URI"]),
            "ARGON2_TIME_COST": 2,
            "ARGON2_MEMORY_COST": 16,
        }
    )
    try:
        resp = Portal(stronger.test_client()).login("carol@example.com")
        assert resp.status_code == 302
        new_hash = _stored_hash(stronger, "carol@example.com")
        assert new_hash != old_hash
        assert "m=16,t=2,p=1" in new_hash
        # The upgraded hash still opens the account, and a wrong password still fails.
        again = Portal(stronger.test_client())
        assert again.login("carol@example.com").status_code == 302
        wrong = Portal(stronger.test_client()).login("carol@example.com", "x" * 20)
        assert wrong.status_code == 400
        # Logging in again with unchanged parameters does not rewrite the hash.
        assert _stored_hash(stronger, "carol@example.com") == new_hash
    finally:
        with stronger.app_context():
            db.session.remove()
            db.engine.dispose()


def test_no_rehash_when_parameters_are_unchanged(app, portal):
    assert portal.register("dave@example.com").status_code == 302
    before = _stored_hash(app, "dave@example.com")
    assert Portal(app.test_client()).login("dave@example.com").status_code == 302
    assert _stored_hash(app, "dave@example.com") == before
    assert len(audit_events(app, "user.login")) == 1
