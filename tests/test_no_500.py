"""No input answers 5xx (issue 22): every integer in a path, a query string or a form,
replaced by 0, -1, 2^31, 2^63, 10^20 and 10^310, and every text field given CR LF,
through the test client on this run's database (SQLite, or PostgreSQL in CI's second
run). Routes, links and forms are discovered from the app and its pages, so one added
later is covered too. Deterministic: the hypothesis fuzzing (tests/fuzz) goes wider."""

from __future__ import annotations

import re
from html import unescape
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from flask import Flask
from sqlalchemy import update
from support.web import Portal, csrf_token, hidden, public_id_of
from werkzeug.routing import IntegerConverter

from app.extensions import db
from app.models import User

BAD_INTS = ("0", "-1", str(2**31), str(2**63), str(10**20), "1" + "0" * 310, "1x", "")
CRLF = "a\r\nX-Injected: 1"
HREF = re.compile(r'href="([^"#]+)"')


@pytest.fixture
def admin_portal(app: Flask) -> tuple[Portal, str]:
    portal = Portal(app.test_client())
    assert portal.register("boundary@example.com").status_code == 302
    with app.app_context():
        db.session.execute(update(User).values(is_admin=True))
        db.session.commit()
    _, plaintext = portal.create_key(name="target", scopes=("keys:read", "keys:write"))
    Portal(app.test_client()).login("boundary@example.com")  # a session to end
    return portal, public_id_of(plaintext)


def _pages(portal: Portal, public_id: str) -> list[str]:
    client = portal.client
    start = ["/", "/keys", f"/keys/{public_id}", "/account", "/dashboard", "/billing"]
    start += ["/admin/", "/admin/users", "/admin/audit", "/admin/keys", "/admin/security"]
    seen: list[str] = []
    for page in start:
        resp = client.get(page)
        if resp.status_code != 200 or resp.mimetype != "text/html":
            continue
        seen.append(page)
        for href in HREF.findall(resp.get_data(as_text=True)):
            href = unescape(href)
            if href.startswith("/") and not href.startswith(("/static/", "/logout")):
                seen.append(href)
    return sorted(set(seen))


def _check(resp: Any, what: object) -> None:
    assert resp.status_code < 500, (what, resp.status_code, resp.get_data(as_text=True)[:300])


def test_every_integer_in_a_path_is_refused_cleanly(app: Flask, admin_portal) -> None:
    portal, _ = admin_portal
    rules = [
        r
        for r in app.url_map.iter_rules()
        if any(isinstance(c, IntegerConverter) for c in r._converters.values())
    ]
    assert rules, "no route takes an integer"
    for rule in rules:
        for bad in BAD_INTS[:-2]:
            path = re.sub(r"<[^>]+>", bad, rule.rule)
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                _check(portal.client.open(path, method=method), (method, path))


def test_every_integer_and_text_in_a_query_is_refused_cleanly(app: Flask, admin_portal) -> None:
    portal, public_id = admin_portal
    links = [p for p in _pages(portal, public_id) if "?" in p]
    # Query parameters the pages name without a link to them.
    links += [
        "/audit/consistency?old=1&new=2",
        "/audit/inclusion?leaf=" + "0" * 64,
        f"/keys/{public_id}/usage.json?days=7",
        "/admin/audit?page=2&seq=1&since=1",
        "/admin/users?page=2",
        "/admin/keys?page=2",
        "/admin/?days=7",
        "/login?next=/keys",
    ]
    tried = 0
    for link in sorted(set(links)):
        parts = urlsplit(link)
        params = parse_qsl(parts.query, keep_blank_values=True)
        for i, (name, _) in enumerate(params):
            for bad in (*BAD_INTS, CRLF, "0" * 64 + "\n"):
                query = urlencode([*params[:i], (name, bad), *params[i + 1 :]])
                _check(portal.client.get(f"{parts.path}?{query}"), (parts.path, name, bad))
                tried += 1
    assert tried > 100


def test_every_form_field_takes_huge_numbers_and_crlf_cleanly(app: Flask, admin_portal) -> None:
    from fuzz.test_fuzz_forms import KEEP, discover

    portal, public_id = admin_portal
    forms = discover(portal.client, [p for p in _pages(portal, public_id) if "?" not in p])
    assert any(f.action == "/account/sessions/end" for f in forms)
    for spec in forms:
        names = [n for n in spec.fields if n not in KEEP]
        # The page is fetched again before each post only for a single-use form_token;
        # a CSRF token stays good for the session.
        page = portal.client.get(spec.page)
        for name in names:
            for bad in (*BAD_INTS, CRLF):
                if "form_token" in spec.fields:
                    page = portal.client.get(spec.page)
                data: dict[str, Any] = {
                    n: (spec.fields[n][0] if spec.fields[n] else "1") for n in names
                }
                data[name] = bad
                html = page.get_data(as_text=True)
                if "csrf_token" in spec.fields and page.status_code == 200:
                    data["csrf_token"] = csrf_token(html)
                token = hidden(html, "form_token")
                if token is not None and name != "form_token":
                    data["form_token"] = token
                _check(portal.client.post(spec.action, data=data), (spec.action, name, bad))


def test_login_with_a_crlf_next_answers_a_redirect_not_an_error(app: Flask, user) -> None:
    """`next=/keys%0d%0aX-Injected: 1`: a 500 with the user logged in behind it."""
    user.logout()
    resp = user.submit(
        "/login?next=/keys%0d%0aX-Injected:%201",
        {"email": "alice@example.com", "password": "correct horse battery staple"},
    )
    assert resp.status_code in (302, 303)
    assert "X-Injected" not in resp.headers
    assert "\n" not in resp.headers["Location"] and "\r" not in resp.headers["Location"]


def test_an_inclusion_leaf_with_a_trailing_newline_is_refused(app: Flask, client) -> None:
    resp = client.get("/audit/inclusion?leaf=" + "a" * 64 + "%0A")
    assert resp.status_code == 400
