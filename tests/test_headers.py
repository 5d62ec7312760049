"""Cache-Control: no-store on every signed-in page, admin page and export; HSTS when
cookies are secure-only or the request came over HTTPS."""

from __future__ import annotations

import re

from support.db import base_config
from support.web import public_id_of

from app import create_app
from app.extensions import db

HSTS = re.compile(r"max-age=(\d+)")


def test_signed_in_pages_are_not_stored(app, user, admin):
    _, plaintext = user.create_key()
    pid = public_id_of(plaintext)
    for path in ("/keys", "/keys/new", f"/keys/{pid}", f"/keys/{pid}/usage.json"):
        resp = user.client.get(path)
        assert resp.status_code == 200, path
        assert "no-store" in resp.headers.get("Cache-Control", ""), path
    for path in (
        "/admin/users",
        "/admin/keys",
        "/admin/audit",
        "/admin/users/1",
        "/admin/audit/export.csv",
        "/admin/audit/export.jsonl",
    ):
        resp = admin.client.get(path)
        resp.get_data()  # exports stream: read them to the end
        assert resp.status_code == 200, path
        assert "no-store" in resp.headers.get("Cache-Control", ""), path
    # A redirect inside the admin area too.
    assert admin.client.get("/admin/").headers["Cache-Control"] == "no-store"


def test_public_pages_and_static_files_stay_cacheable(app, client):
    assert "Cache-Control" not in client.get("/login").headers
    static = client.get("/static/css/app.css")
    assert static.status_code == 200 and "no-store" not in static.headers.get("Cache-Control", "")


def test_no_hsts_over_plain_http_by_default(app, client):
    assert "Strict-Transport-Security" not in client.get("/login").headers


def test_hsts_over_https(app, client):
    resp = client.get("/login", base_url="https://keyledger.test")
    value = resp.headers["Strict-Transport-Security"]
    assert int(HSTS.search(value).group(1)) >= 365 * 24 * 3600


def test_hsts_behind_a_proxy_that_says_https(tmp_path, migrated_db):
    from support.db import fresh_db

    app = create_app(
        {**base_config(tmp_path, fresh_db(migrated_db, tmp_path)), "PROXY_FIX_HOPS": 1}
    )
    try:
        resp = app.test_client().get("/login", headers={"X-Forwarded-Proto": "https"})
        assert int(HSTS.search(resp.headers["Strict-Transport-Security"]).group(1)) >= 31536000
    finally:
        with app.app_context():
            db.engine.dispose()


def test_hsts_always_with_secure_cookies(tmp_path, migrated_db):
    from support.db import fresh_db

    app = create_app(
        {**base_config(tmp_path, fresh_db(migrated_db, tmp_path)), "SESSION_COOKIE_SECURE": True}
    )
    try:
        resp = app.test_client().get("/login")
        assert int(HSTS.search(resp.headers["Strict-Transport-Security"]).group(1)) >= 31536000
    finally:
        with app.app_context():
            db.engine.dispose()


def test_every_page_carries_the_browser_hardening_headers(app, user):
    for path in ("/login", "/keys", "/nope"):
        resp = user.client.get(path)
        headers = resp.headers
        assert resp.mimetype == "text/html" and "charset=utf-8" in headers["Content-Type"], path
        assert "default-src 'self'" in headers["Content-Security-Policy"], path
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"], path
        assert headers["X-Frame-Options"] == "DENY", path
        assert headers["X-Content-Type-Options"] == "nosniff", path
        assert headers["Referrer-Policy"] == "same-origin", path
        assert "Access-Control-Allow-Origin" not in headers, path
    api = user.client.post("/api/v1/keys/validate", json={})
    assert api.headers["X-Content-Type-Options"] == "nosniff"
    assert "Access-Control-Allow-Origin" not in api.headers


def test_methods_not_in_use_are_refused(app, user):
    assert user.client.delete("/keys").status_code == 405
    assert user.client.put("/login").status_code == 405
    assert user.client.open("/keys", method="TRACE").status_code == 405


def _production_app(tmp_path, migrated_db, **over):
    from support.db import fresh_db

    conf = base_config(tmp_path, fresh_db(migrated_db, tmp_path))
    conf.update(
        KEYLEDGER_ENV="production", AUDIT_SIGNING_KEY=None, MAIL_URL="smtp://127.0.0.1:25", **over
    )
    from app.config import _GENERATED

    conf["AUDIT_SIGNING_KEY"] = _GENERATED["audit_signing_key.pem"][1]()
    return create_app(conf)


def test_production_defaults_to_host_cookies_and_hsts(tmp_path, migrated_db, monkeypatch):
    """ASVS 3.4.1, 3.4.4, 14.4.5: KEYLEDGER_ENV=production alone gives Secure __Host-
    cookies and HSTS on every page, without remembering one more setting."""
    monkeypatch.delenv("SESSION_COOKIE_SECURE", raising=False)
    monkeypatch.delenv("HSTS", raising=False)
    app = _production_app(tmp_path, migrated_db)
    try:
        resp = app.test_client().get("/login", base_url="https://keyledger.test")
        cookie = next(v for k, v in resp.headers.items() if k == "Set-Cookie")
        assert cookie.startswith("__Host-session=") and "Secure" in cookie
        plain = app.test_client().get("/login")  # TLS ends at a proxy that says nothing
        assert int(HSTS.search(plain.headers["Strict-Transport-Security"]).group(1)) >= 31536000
    finally:
        with app.app_context():
            db.engine.dispose()


def test_production_defaults_give_way_to_explicit_settings(tmp_path, migrated_db, monkeypatch):
    """Behind a plain-HTTP staging proxy an operator turns them off, from the environment."""
    monkeypatch.setenv("SESSION_COOKIE_SECURE", "false")
    monkeypatch.setenv("HSTS", "off")
    app = _production_app(tmp_path, migrated_db)
    try:
        resp = app.test_client().get("/login")
        cookie = next(v for k, v in resp.headers.items() if k == "Set-Cookie")
        assert cookie.startswith("session=") and "Secure" not in cookie
        assert "Strict-Transport-Security" not in resp.headers
    finally:
        with app.app_context():
            db.engine.dispose()


def test_every_json_answer_is_not_stored(app, user, admin):
    """Key lists, usage, proofs and charts carry an account's data: no shared or
    back-button cache may keep them (ASVS 8.2.1)."""
    from support.rows import flush_usage

    _, plaintext = user.create_key(scopes=("keys:read", "usage:read"))
    bearer = {"Authorization": f"Bearer {plaintext}"}
    user.client.post("/api/v1/keys/validate", json={"key": plaintext})
    flush_usage(app)
    answers = [
        user.client.get("/api/v1/keys", headers=bearer),
        user.client.get("/api/v1/usage", headers=bearer),
        user.client.post("/api/v1/keys/validate", json={"key": plaintext}),
        admin.client.get("/admin/charts/requests.json"),
    ]
    for resp in answers:
        assert resp.status_code == 200 and resp.mimetype == "application/json", resp.request.path
        assert "no-store" in resp.headers.get("Cache-Control", ""), resp.request.path
