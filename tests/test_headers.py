"""Cache-Control: no-store on every signed-in page, admin page and export; HSTS when
cookies are secure-only or the request came over HTTPS."""

from __future__ import annotations

import re

from conftest import base_config, public_id_of

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
    from conftest import _fresh_db

    app = create_app(
        {**base_config(tmp_path, _fresh_db(migrated_db, tmp_path)), "PROXY_FIX_HOPS": 1}
    )
    try:
        resp = app.test_client().get("/login", headers={"X-Forwarded-Proto": "https"})
        assert int(HSTS.search(resp.headers["Strict-Transport-Security"]).group(1)) >= 31536000
    finally:
        with app.app_context():
            db.engine.dispose()


def test_hsts_always_with_secure_cookies(tmp_path, migrated_db):
    from conftest import _fresh_db

    app = create_app(
        {**base_config(tmp_path, _fresh_db(migrated_db, tmp_path)), "SESSION_COOKIE_SECURE": True}
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
