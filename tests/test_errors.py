"""Bad input on every form: a clear answer, never a 500, and nothing changed.

Also the error pages themselves: HTML for the portal, JSON under /api/.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from typing import Any

import pytest
from flask import abort
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from sqlalchemy import select
from support.rows import snapshot
from support.web import OTHER_PASSWORD, PASSWORD, Portal, csrf_token, hidden, public_id_of

from app.extensions import db
from app.models import User

BIG = "x" * 20_000


@dataclass
class Form:
    """A form as a person reaches it: the page it is on, where it posts, good values."""

    page: str
    action: str
    fields: dict[str, Any]
    audited: tuple[str, ...] = ()


def _forms(app, portal: Portal, admin: Portal | None) -> dict[str, tuple[Portal, Form]]:
    """Every form in the portal, set up with an account, a key and an admin."""
    _, plaintext = portal.create_key(name="target")
    pid = public_id_of(plaintext)
    with app.app_context():
        uid = db.session.scalar(select(User.id).where(User.email == "alice@example.com"))
    anon = Portal(app.test_client())
    return {
        "register": (
            anon,
            Form(
                "/register",
                "/register",
                {"email": "n@example.com", "password": PASSWORD, "confirm": PASSWORD},
            ),
        ),
        "login": (
            anon,
            Form(
                "/login",
                "/login",
                {"email": "alice@example.com", "password": OTHER_PASSWORD},
                audited=("user.login_failed",),
            ),
        ),
        "new_key": (
            portal,
            Form(
                "/keys/new",
                "/keys/new",
                {"name": "k", "scopes": "keys:read", "custom_scopes": "", "lifetime_days": "5"},
            ),
        ),
        "rotate": (
            portal,
            Form(f"/keys/{pid}", f"/keys/{pid}/rotate", {"grace": "now"}),
        ),
        "revoke": (
            portal,
            Form(f"/keys/{pid}", f"/keys/{pid}/revoke", {"confirm": "y"}),
        ),
        "admin_tier": (
            admin,
            Form(f"/admin/users/{uid}", f"/admin/users/{uid}", {"tier": "premium"}),
        ),
        "logout": (portal, Form("/keys", "/logout", {})),
    }


FORMS = ["register", "login", "new_key", "rotate", "revoke", "admin_tier", "logout"]


def _tokens(who: Portal, form: Form) -> dict[str, str]:
    html = who.client.get(form.page).get_data(as_text=True)
    tokens = {"csrf_token": csrf_token(html)}
    token = hidden(html, "form_token")
    if token:
        tokens["form_token"] = token
    return tokens


def _assert_calm(resp) -> None:
    assert resp.status_code < 500, resp.get_data(as_text=True)[:2000]
    body = resp.get_data(as_text=True)
    assert "Traceback" not in body and "sqlalchemy" not in body.lower()


def _assert_unchanged(app, before: dict[str, int], form: Form) -> None:
    after = snapshot(app)
    assert after["user"] == before["user"]
    assert after["api_key"] == before["api_key"]
    grew = after["audit_event"] - before["audit_event"]
    assert grew == 0 or (form.audited and grew == 1)


def _logged_in(who: Portal) -> bool:
    return who.client.get("/keys").status_code == 200


@pytest.fixture
def forms(app, user, admin):
    return _forms(app, user, admin)


# --- CSRF -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", FORMS)
def test_missing_csrf_token_gets_a_friendly_400(app, forms, name):
    who, form = forms[name]
    tokens = _tokens(who, form)
    tokens.pop("csrf_token")
    before = snapshot(app)
    resp = who.client.post(form.action, data={**tokens, **form.fields})
    assert resp.status_code == 400
    assert resp.mimetype == "text/html"
    assert "This form has expired" in resp.get_data(as_text=True)
    assert "nothing changed" in resp.get_data(as_text=True)
    _assert_unchanged(app, before, Form("", "", {}))
    if name != "register" and name != "login":
        assert _logged_in(who)


@pytest.mark.parametrize("name", FORMS)
def test_stale_csrf_token_gets_a_friendly_400(app, forms, name):
    """A token signed two hours ago (the limit is one hour), for the right session."""
    who, form = forms[name]
    tokens = _tokens(who, form)
    with who.client.session_transaction() as sess:
        raw = sess["csrf_token"]

    class TwoHoursAgo(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - 7200

    stale = URLSafeTimedSerializer(
        app.config["SECRET_KEY"], salt="wtf-csrf-token", signer=TwoHoursAgo
    ).dumps(raw)
    before = snapshot(app)
    resp = who.client.post(form.action, data={**tokens, "csrf_token": stale, **form.fields})
    assert resp.status_code == 400
    assert "This form has expired" in resp.get_data(as_text=True)
    _assert_unchanged(app, before, Form("", "", {}))


@pytest.mark.parametrize("name", FORMS)
def test_csrf_token_from_another_browser_is_refused(app, forms, name):
    who, form = forms[name]
    tokens = _tokens(who, form)
    elsewhere = csrf_token(app.test_client().get("/login").get_data(as_text=True))
    before = snapshot(app)
    resp = who.client.post(form.action, data={**tokens, "csrf_token": elsewhere, **form.fields})
    assert resp.status_code == 400
    assert "This form has expired" in resp.get_data(as_text=True)
    _assert_unchanged(app, before, Form("", "", {}))


# --- malformed bodies -----------------------------------------------------------------


def _mutations(fields: dict[str, Any]) -> dict[str, Any]:
    return {
        "missing-fields": {},
        "empty-fields": {k: "" for k in fields},
        "oversized-fields": {k: BIG for k in fields},
        "repeated-fields": {k: [BIG, "", "x"] for k in fields},
        "nul-bytes": {k: f"a\x00{v}" for k, v in fields.items()},
        "file-uploads": {k: (io.BytesIO(b"file body"), "f.txt") for k in fields},
        "unknown-fields-only": {"is_admin": "1", "user_id": "1", "role": "admin"},
    }


MUTATIONS = list(_mutations({}))


@pytest.mark.parametrize("mutation", MUTATIONS)
@pytest.mark.parametrize("name", [f for f in FORMS if f != "logout"])
def test_malformed_form_input_never_500s_and_changes_nothing(app, forms, name, mutation):
    who, form = forms[name]
    tokens = _tokens(who, form)
    data = _mutations(form.fields)[mutation]
    before = snapshot(app)
    resp = who.client.post(
        form.action,
        data={**tokens, **data},
        content_type="multipart/form-data" if mutation == "file-uploads" else None,
    )
    _assert_calm(resp)
    assert resp.status_code in (302, 400, 403, 413), resp.status_code
    _assert_unchanged(app, before, form)
    with app.app_context():
        tiers = dict(db.session.execute(select(User.email, User.tier)).all())
    assert tiers["alice@example.com"] == "basic"
    assert tiers.get("n@example.com") is None


@pytest.mark.parametrize("name", FORMS)
def test_json_instead_of_a_form_never_500s(app, forms, name):
    who, form = forms[name]
    tokens = _tokens(who, form)
    before = snapshot(app)
    resp = who.client.post(form.action, json={**tokens, **form.fields})
    _assert_calm(resp)
    _assert_unchanged(app, before, form)


@pytest.mark.parametrize("name", FORMS)
def test_a_body_over_the_limit_gets_413(app, forms, name):
    who, form = forms[name]
    tokens = _tokens(who, form)
    before = snapshot(app)
    resp = who.client.post(form.action, data={**tokens, **form.fields, "pad": "x" * 70_000})
    assert resp.status_code == 413
    assert "too large" in resp.get_data(as_text=True)
    _assert_unchanged(app, before, form)


@pytest.mark.parametrize(
    "path",
    [
        "/keys/%00",
        "/keys/" + "A" * 5000,
        "/keys/..%2F..%2Fadmin",
        "/keys/ünï",
        "/keys/'%20OR%201=1",
    ],
)
def test_odd_key_ids_in_urls_are_404(app, user, path):
    page = user.client.get("/keys").get_data(as_text=True)
    before = snapshot(app)
    for resp in (
        user.client.get(path),
        user.client.post(path + "/revoke", data={"csrf_token": csrf_token(page), "confirm": "y"}),
        user.client.post(path + "/rotate", data={"csrf_token": csrf_token(page), "grace": "now"}),
    ):
        _assert_calm(resp)
        assert resp.status_code == 404
    assert snapshot(app) == before


def test_login_bad_input_is_audited_only_when_it_is_a_real_attempt(app, user):
    user.logout()
    before = snapshot(app)
    user.submit("/login", {"email": "", "password": ""})
    user.submit("/login", {"email": BIG, "password": "x"})
    assert snapshot(app) == before
    user.submit("/login", {"email": "alice@example.com", "password": "wrong password!"})
    assert snapshot(app)["audit_event"] == before["audit_event"] + 1


# --- error pages ----------------------------------------------------------------------


def _probe_routes(app) -> None:
    app.add_url_rule("/probe/<int:code>", "probe", lambda code: abort(code))
    app.add_url_rule("/api/v1/probe/<int:code>", "api_probe", lambda code: abort(code))

    def boom():
        raise RuntimeError("secret internals")

    app.add_url_rule("/probe-crash", "probe_crash", boom)
    app.add_url_rule("/api/v1/probe-crash", "api_probe_crash", boom)


@pytest.mark.parametrize("code", [400, 403, 404, 405, 413, 429])
def test_error_pages_are_html_in_the_portal_and_json_under_api(app, client, code):
    _probe_routes(app)
    html = client.get(f"/probe/{code}")
    assert html.status_code == code
    assert html.mimetype == "text/html"
    text = html.get_data(as_text=True)
    assert f'<p class="code">{code}</p>' in text and "Back to Keyledger" in text
    api = client.get(f"/api/v1/probe/{code}")
    assert api.status_code == code
    assert api.mimetype == "application/json"
    assert set(api.json) == {"error", "message"}
    assert api.json["error"] in (
        "bad_request",
        "forbidden",
        "not_found",
        "method_not_allowed",
        "payload_too_large",
        "rate_limited",
    )


def test_a_crash_is_a_calm_500_without_internals(app, client):
    _probe_routes(app)
    html = client.get("/probe-crash")
    assert html.status_code == 500
    assert "secret internals" not in html.get_data(as_text=True)
    assert "Something went wrong" in html.get_data(as_text=True)
    api = client.get("/api/v1/probe-crash")
    assert api.status_code == 500
    assert api.json["error"] == "internal_error"
    assert "secret internals" not in api.get_data(as_text=True)


def test_real_routes_answer_errors_in_their_format(app, user, client):
    assert client.get("/no-such-page").status_code == 404
    assert client.get("/no-such-page").mimetype == "text/html"
    assert client.get("/logout").status_code == 405
    assert client.get("/logout").mimetype == "text/html"
    missing = client.get("/api/v1/no-such-endpoint")
    assert missing.status_code == 404 and missing.json["error"] == "not_found"
    wrong_method = client.get("/api/v1/keys/validate")
    assert wrong_method.status_code == 405
    assert wrong_method.json["error"] == "method_not_allowed"
