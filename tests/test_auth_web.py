"""Log in, log out, registration switch, redirects and the session cookie."""

from __future__ import annotations

import pytest
from support.db import base_config
from support.rows import audit_events, snapshot
from support.web import OTHER_PASSWORD, PASSWORD, Portal

from app import create_app
from app.extensions import db

SAME_MESSAGE = "Email or password is wrong."


def test_login_and_logout_round_trip(app, user, client):
    assert client.get("/keys").status_code == 200
    resp = user.logout()
    assert resp.status_code == 302 and resp.headers["Location"] == "/login"
    assert client.get("/keys").status_code == 302
    resp = user.login("alice@example.com")
    assert resp.status_code == 302 and resp.headers["Location"] == "/dashboard"
    page = client.get("/keys").get_data(as_text=True)
    assert "Signed in as </span><strong>alice@example.com</strong>" in page


def test_wrong_password_and_unknown_email_look_the_same(app, user):
    user.logout()
    wrong = user.login("alice@example.com", "not the right password")
    unknown = user.login("nobody@example.com", "not the right password")
    assert wrong.status_code == unknown.status_code == 400
    for resp in (wrong, unknown):
        assert SAME_MESSAGE in resp.get_data(as_text=True)
    # Apart from the per-form tokens the two pages are identical.
    import re

    def strip(html: str) -> str:
        # CSRF tokens carry a timestamp: the hidden field's and the passkey button's.
        html = re.sub(r'(value|data-csrf)="[^"]*"', r'\1=""', html)
        return html.replace("nobody@example.com", "alice@example.com")

    assert strip(wrong.get_data(as_text=True)) == strip(unknown.get_data(as_text=True))
    failed = audit_events(app, "user.login_failed")
    assert len(failed) == 2
    assert {e.outcome for e in failed} == {"failure"}


def test_a_password_typed_into_the_email_field_stays_out_of_the_trail(app, user):
    user.logout()
    secret_like = "my-very-secret-passphrase"
    resp = user.login(secret_like, "whatever-long-enough")
    assert resp.status_code == 400
    for event in audit_events(app, "user.login_failed"):
        assert secret_like not in event.details
        assert secret_like.encode() not in bytes(event.canonical)


def test_logout_is_post_only(app, user, client):
    before = snapshot(app)
    resp = client.get("/logout")
    assert resp.status_code == 405
    assert client.get("/keys").status_code == 200  # still logged in
    assert snapshot(app) == before


def test_logout_needs_a_csrf_token(app, user, client):
    before = snapshot(app)
    resp = client.post("/logout")
    assert resp.status_code == 400
    assert "This form has expired" in resp.get_data(as_text=True)
    assert client.get("/keys").status_code == 200  # still logged in
    assert snapshot(app) == before


def test_logout_is_audited(app, user):
    user.logout()
    assert [e.action for e in audit_events(app, "user.logout")] == ["user.logout"]


def test_registration_can_be_closed(migrated_db, tmp_path):
    from support.db import fresh_db

    closed = create_app(
        {**base_config(tmp_path, fresh_db(migrated_db, tmp_path)), "REGISTRATION_OPEN": False}
    )
    try:
        client = closed.test_client()
        page = client.get("/register")
        assert page.status_code == 403
        assert "Registration is closed" in page.get_data(as_text=True)
        assert "Sign up" not in client.get("/login").get_data(as_text=True)
        # A hand-made POST does not create an account either.
        login_page = client.get("/login").get_data(as_text=True)
        from support.web import csrf_token

        resp = client.post(
            "/register",
            data={
                "csrf_token": csrf_token(login_page),
                "email": "x@example.com",
                "password": PASSWORD,
                "confirm": PASSWORD,
            },
        )
        assert resp.status_code == 403
        with closed.app_context():
            from sqlalchemy import text

            assert db.session.execute(text('SELECT COUNT(*) FROM "user"')).scalar_one() == 0
    finally:
        with closed.app_context():
            db.session.remove()
            db.engine.dispose()


def test_registration_closes_from_the_environment(migrated_db, tmp_path, monkeypatch):
    from support.db import fresh_db

    monkeypatch.setenv("REGISTRATION_OPEN", "false")
    closed = create_app(base_config(tmp_path, fresh_db(migrated_db, tmp_path)))
    try:
        assert closed.test_client().get("/register").status_code == 403
    finally:
        with closed.app_context():
            db.session.remove()
            db.engine.dispose()


def test_registration_is_open_by_default(client):
    page = client.get("/register")
    assert page.status_code == 200
    assert "Create your account" in page.get_data(as_text=True)


def test_pages_need_a_login_and_come_back_after_it(app, portal, client):
    portal.register("alice@example.com")
    portal.logout()
    resp = client.get("/keys/new")
    assert resp.status_code == 302
    assert resp.headers["Location"].startswith("/login?next=")
    resp = portal.submit(
        "/login?next=/keys/new",
        {"email": "alice@example.com", "password": PASSWORD},
    )
    assert resp.status_code == 302
    assert resp.headers["Location"] == "/keys/new"


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/phish",
        "//evil.example/phish",
        "///evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "/\t/evil.example",
        "/\n/evil.example",
        " //evil.example",
        "javascript:alert(1)",
        "http:/evil.example",
        "",
    ],
)
def test_next_only_accepts_same_site_paths(app, portal, target):
    from urllib.parse import quote

    portal.register("alice@example.com")
    portal.logout()
    resp = portal.submit(
        "/login",
        {"email": "alice@example.com", "password": PASSWORD},
        action=f"/login?next={quote(target, safe='')}",
    )
    assert resp.status_code == 302
    assert resp.headers["Location"] == "/dashboard"


def test_logged_in_users_skip_login_and_register(user, client):
    assert client.get("/login").headers["Location"] == "/dashboard"
    assert client.get("/register").headers["Location"] == "/keys"


def test_login_rate_limit_answers_429_with_a_page(migrated_db, tmp_path):
    from support.db import fresh_db

    limited = create_app(
        {**base_config(tmp_path, fresh_db(migrated_db, tmp_path)), "LOGIN_RATE_LIMIT": "3/minute"}
    )
    try:
        bob = Portal(limited.test_client())
        codes = [bob.login("bob@example.com", OTHER_PASSWORD).status_code for _ in range(4)]
        assert codes == [400, 400, 400, 429]
        last = bob.login("bob@example.com", OTHER_PASSWORD)
        assert last.status_code == 429
        assert last.mimetype == "text/html"
        assert "Too many log-in attempts" in last.get_data(as_text=True)
        assert "Retry-After" in last.headers
        refused = audit_events(limited, "user.login_throttled")
        assert len(refused) == 2 and {e.sensitivity for e in refused} == {"high"}
    finally:
        with limited.app_context():
            db.session.remove()
            db.engine.dispose()


def _set_cookie(resp) -> str:
    cookies = [v for k, v in resp.headers.items() if k == "Set-Cookie" and "session=" in v]
    assert cookies, "no session cookie set"
    return cookies[-1]


def test_session_cookie_is_httponly_and_lax(portal):
    cookie = _set_cookie(portal.register("alice@example.com"))
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Secure" not in cookie


def test_session_cookie_is_secure_when_configured(migrated_db, tmp_path, monkeypatch):
    from support.db import fresh_db

    monkeypatch.setenv("SESSION_COOKIE_SECURE", "true")
    secure = create_app(base_config(tmp_path, fresh_db(migrated_db, tmp_path)))
    try:
        client = secure.test_client()
        resp = client.get("/login", base_url="https://localhost")
        cookie = _set_cookie(resp)
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
        assert cookie.startswith("__Host-session=") and "Domain" not in cookie
        assert "Path=/;" in cookie or cookie.endswith("Path=/")
    finally:
        with secure.app_context():
            db.session.remove()
            db.engine.dispose()
