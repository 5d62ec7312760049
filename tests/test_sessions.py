"""Server-side sessions: the cookie names a record, logout ends it, expiry, the API."""

from __future__ import annotations

from datetime import timedelta

import pytest
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import event, select, update
from support.db import base_config, fresh_db
from support.web import PASSWORD, Portal, csrf_token

from app import create_app
from app.extensions import db
from app.models import UserSession
from app.models._types import utcnow
from app.sessions import token_hash


def cookie(client) -> str | None:
    found = client.get_cookie("session")
    return found.value if found else None


def cookie_payload(app, value: str):
    return app.session_interface.get_signing_serializer(app).loads(value)


def records(app) -> list[UserSession]:
    with app.app_context():
        rows = db.session.scalars(select(UserSession).order_by(UserSession.id)).all()
        db.session.expunge_all()
        return rows


def age(app, **changes) -> None:
    """Move every session's clock back (a session seen/created that long ago)."""
    now = utcnow()
    values = {col: now - delta for col, delta in changes.items()}
    with app.app_context():
        db.session.execute(update(UserSession).values(**values))
        db.session.commit()


def test_the_cookie_carries_only_the_signed_id_of_a_record(app, user, client):
    payload = cookie_payload(app, cookie(client))
    assert isinstance(payload, str)  # a token, no user id, no contents
    (record,) = records(app)
    assert record.token_hash == token_hash(payload)
    assert record.ip == "127.0.0.1"
    assert "alice" not in payload


def test_a_replayed_cookie_after_logout_is_anonymous(app, user, client):
    stolen = cookie(client)
    assert client.get("/keys").status_code == 200
    user.logout()
    assert records(app) == []
    thief = app.test_client()
    thief.set_cookie("session", stolen)
    resp = thief.get("/keys")
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/login")
    # Nor can it make a key: no form token works without a session either.
    page = thief.get("/login").get_data(as_text=True)
    resp = thief.post(
        "/keys/new",
        data={"csrf_token": csrf_token(page), "name": "x", "lifetime_days": 5},
    )
    assert resp.status_code in (302, 400)
    assert "/keys/" not in resp.headers.get("Location", "")


def test_every_login_gets_a_new_id_and_the_anonymous_cookie_is_not_kept(app, portal, client):
    portal.register("alice@example.com")
    first = cookie_payload(app, cookie(client))
    portal.logout()
    client.get("/login")
    anonymous = cookie(client)
    portal.login("alice@example.com")
    second = cookie_payload(app, cookie(client))
    assert second != first and cookie(client) != anonymous
    assert [r.token_hash for r in records(app)] == [token_hash(second)]


def test_a_forged_old_style_cookie_with_a_user_id_is_not_a_login(app, user, client):
    signer: URLSafeTimedSerializer = app.session_interface.get_signing_serializer(app)
    thief = app.test_client()
    thief.set_cookie("session", signer.dumps({"_user_id": "1", "_fresh": True}))
    assert thief.get("/keys").status_code == 302


def test_a_tampered_cookie_is_anonymous(app, user, client):
    value = cookie(client)
    thief = app.test_client()
    thief.set_cookie("session", value[:-2] + ("AA" if not value.endswith("AA") else "BB"))
    assert thief.get("/keys").status_code == 302


def test_idle_timeout_default_60_minutes(app, user, client):
    age(app, last_seen_at=timedelta(minutes=59))
    assert client.get("/keys").status_code == 200
    age(app, last_seen_at=timedelta(minutes=61))
    resp = client.get("/keys")
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/login")
    assert records(app) == []  # ended on sight


def test_absolute_lifetime_default_12_hours_even_when_active(app, user, client):
    age(app, created_at=timedelta(hours=11, minutes=59), last_seen_at=timedelta(seconds=5))
    assert client.get("/keys").status_code == 200
    age(app, created_at=timedelta(hours=12, minutes=1), last_seen_at=timedelta(seconds=5))
    assert client.get("/keys").status_code == 302
    assert records(app) == []


@pytest.fixture
def short_app(migrated_db, tmp_path, monkeypatch):
    monkeypatch.setenv("SESSION_IDLE_MINUTES", "5")
    monkeypatch.setenv("SESSION_MAX_HOURS", "1")
    short = create_app(base_config(tmp_path, fresh_db(migrated_db, tmp_path)))
    yield short
    with short.app_context():
        db.session.remove()
        db.engine.dispose()


def test_both_lifetimes_come_from_the_environment(short_app):
    alice = Portal(short_app.test_client())
    assert alice.register("alice@example.com").status_code == 302
    age(short_app, last_seen_at=timedelta(minutes=4))
    assert alice.client.get("/keys").status_code == 200
    age(short_app, last_seen_at=timedelta(minutes=6))
    assert alice.client.get("/keys").status_code == 302

    alice.login("alice@example.com")
    age(short_app, created_at=timedelta(minutes=59), last_seen_at=timedelta(0))
    assert alice.client.get("/keys").status_code == 200
    age(short_app, created_at=timedelta(minutes=61), last_seen_at=timedelta(0))
    assert alice.client.get("/keys").status_code == 302


def test_last_seen_is_written_at_most_once_a_minute(app, user, client):
    age(app, last_seen_at=timedelta(seconds=30))
    (before,) = records(app)
    client.get("/keys")
    client.get("/keys")
    (after,) = records(app)
    assert after.last_seen_at == before.last_seen_at
    age(app, last_seen_at=timedelta(minutes=2))
    client.get("/keys")
    (touched,) = records(app)
    assert utcnow() - touched.last_seen_at < timedelta(seconds=30)


def test_the_api_never_reads_or_sets_the_portal_session(app, user, client):
    statements: list[str] = []

    def seen(conn, cursor, statement, *args):
        statements.append(statement)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", seen)
    try:
        resp = client.post("/api/v1/keys/validate", json={"key": "not-a-key"})
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert resp.status_code in (400, 401)
    assert "Set-Cookie" not in resp.headers
    # A malformed key costs no query at all: no session or user lookup ran.
    assert not [s for s in statements if "user_session" in s or 'FROM "user"' in s], statements


def test_a_disabled_account_is_logged_out_even_if_a_record_survived(app, user, client):
    from app.models import User

    with app.app_context():
        db.session.execute(update(User).values(disabled_at=utcnow()))
        db.session.commit()
    assert client.get("/keys").status_code == 302


def test_password_is_never_in_a_session_record(app, user):
    for record in records(app):
        assert PASSWORD not in record.data


def test_a_failing_session_lookup_logs_no_one_out(app, user, client):
    """The sessions table unreadable for a moment (renamed away): pages answer the 503
    page (not a 500, not a login form that looks like a logout), the browser's cookie is
    not replaced, and once the table is back the same cookie is logged in again."""
    from sqlalchemy import text

    before = cookie(client)
    with app.app_context():
        db.session.execute(text("ALTER TABLE user_session RENAME TO user_session_away"))
        db.session.commit()
    try:
        for path in ("/login", "/keys"):
            resp = client.get(path)
            assert resp.status_code == 503, path
            assert "Set-Cookie" not in resp.headers
            assert resp.headers["Content-Security-Policy"]
    finally:
        with app.app_context():
            db.session.execute(text("ALTER TABLE user_session_away RENAME TO user_session"))
            db.session.commit()
    assert cookie(client) == before
    assert client.get("/keys").status_code == 200
