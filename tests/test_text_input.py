"""NUL, control, bidi-override and zero-width characters in any text field: a clear form
error or a 400 bad_request, nothing stored, on SQLite and PostgreSQL alike (the suite
runs on both). Emails are normalised (NFKC, lower case) before uniqueness."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from support.rows import audit_events, key_row, snapshot
from support.web import PASSWORD, Portal, public_id_of

from app import accounts, text
from app.extensions import db

# One of each family the issue names, and a few neighbours.
BAD = {
    "nul": "\x00",
    "c0": "\x07",
    "del": "\x7f",
    "c1": "\x85",
    "bidi-override": "\u202e",
    "bidi-isolate": "\u2066",
    "zero-width-space": "\u200b",
    "zero-width-joiner": "\u200d",
    "bom": "\ufeff",
    "line-separator": "\u2028",
}
BAD_IDS = list(BAD)
BAD_CHARS = [BAD[k] for k in BAD_IDS]
# Through the whole stack, one of each family (the check itself sees every one above).
FIELD_IDS = ["nul", "c1", "bidi-override", "zero-width-space", "line-separator"]
FIELD_CHARS = [BAD[k] for k in FIELD_IDS]


def test_the_check_itself():
    for ch in BAD_CHARS:
        assert text.problem(f"a{ch}b") is not None, repr(ch)
    for fine in ("billing worker (prod)", "Ünïcödé names", "日本語", "emoji 🔑", "a-b_c.d"):
        assert text.problem(fine) is None, fine
    assert text.problem("two\nlines\ttab", multiline=True) is None
    assert text.problem("two\nlines") is not None
    assert text.problem("no\x00nul", multiline=True) is not None
    assert "U+202E" in (text.problem("x\u202ey") or "")
    assert text.unsafe_json({"a": [{"b": "ok"}, "x\x00"]}) == (
        '"a[1]" contains a control character (U+0000); remove it and try again'
    )
    assert text.unsafe_json({"k\u200b": 1}) is not None
    assert text.unsafe_json({"a": [1, True, None, "fine"]}) is None


@pytest.mark.parametrize("ch", FIELD_CHARS, ids=FIELD_IDS)
def test_registration_email_refused(app, portal, ch):
    before = snapshot(app)
    resp = portal.register(f"ali{ch}ce@example.com")
    assert resp.status_code == 400
    html = resp.get_data(as_text=True)
    assert "remove it and try again" in html
    assert snapshot(app) == before


@pytest.mark.parametrize("ch", FIELD_CHARS, ids=FIELD_IDS)
def test_login_email_with_bad_characters_is_a_form_error(app, user, client, ch):
    user.logout()
    resp = user.login(f"alice{ch}@example.com")
    assert resp.status_code == 400
    assert "remove it and try again" in resp.get_data(as_text=True)


@pytest.mark.parametrize("ch", FIELD_CHARS, ids=FIELD_IDS)
@pytest.mark.parametrize("field", ["name", "custom_scopes"])
def test_new_key_fields_refused(app, user, field, ch):
    before = snapshot(app)
    values = {"name": "ci", "custom": ""}
    if field == "name":
        values["name"] = f"billing{ch}worker"
    else:
        values["custom"] = f"orders:read{ch}"
    resp, plaintext = user.create_key(name=values["name"], custom=values["custom"])
    assert resp.status_code == 400
    assert plaintext is None
    assert "remove it and try again" in resp.get_data(as_text=True)
    assert snapshot(app) == before


@pytest.mark.parametrize("ch", FIELD_CHARS, ids=FIELD_IDS)
@pytest.mark.parametrize("field", ["name", "note"])
def test_editing_name_or_note_refused(app, user, field, ch):
    _, plaintext = user.create_key(name="ci")
    pid = public_id_of(plaintext)
    before = snapshot(app)
    data = {"name": "ci", "note": "fine"}
    data[field] = f"bad{ch}value"
    resp = user.submit(f"/keys/{pid}", data, action=f"/keys/{pid}/edit")
    assert resp.status_code == 302
    page = user.client.get(f"/keys/{pid}").get_data(as_text=True)
    assert "Not saved." in page and "remove it and try again" in page
    assert snapshot(app) == before
    row = key_row(app, pid)
    assert row.name == "ci" and row.note is None


def test_a_note_may_have_several_lines(app, user):
    _, plaintext = user.create_key(name="ci")
    pid = public_id_of(plaintext)
    resp = user.submit(
        f"/keys/{pid}", {"name": "ci", "note": "line one\r\nline two"}, action=f"/keys/{pid}/edit"
    )
    assert resp.status_code == 302
    assert "line one\r\nline two" in user.client.get(f"/keys/{pid}").get_data(as_text=True)


def _api_key(user: Portal) -> str:
    _, plaintext = user.create_key(name="admin", scopes=("keys:read", "keys:write"))
    assert plaintext
    return plaintext


@pytest.mark.parametrize("ch", FIELD_CHARS, ids=FIELD_IDS)
@pytest.mark.parametrize(
    "body",
    [
        lambda ch: {"name": f"svc{ch}"},
        lambda ch: {"name": "svc", "scopes": [f"keys:read{ch}"]},
        lambda ch: {"name": "svc", f"sc{ch}opes": []},
    ],
    ids=["name", "scopes", "field-name"],
)
def test_api_json_refused_with_400(app, user, client, body, ch):
    key = _api_key(user)
    before = snapshot(app)
    resp = client.post("/api/v1/keys", json=body(ch), headers={"X-API-Key": key})
    assert resp.status_code == 400, resp.get_data(as_text=True)
    assert resp.json["error"] == "bad_request"
    assert "remove it and try again" in resp.json["message"]
    assert snapshot(app) == before


def test_api_nul_in_a_key_name_is_400_not_201_or_503(app, user, client):
    """The issue's reproduction: raw JSON with an escaped NUL."""
    key = _api_key(user)
    before = snapshot(app)
    resp = client.post(
        "/api/v1/keys",
        data=b'{"name": "a\\u0000b"}',
        headers={"X-API-Key": key, "Content-Type": "application/json"},
    )
    assert resp.status_code == 400 and resp.json["error"] == "bad_request"
    assert snapshot(app) == before
    # A lone surrogate cannot be stored in any encoding either.
    resp = client.post(
        "/api/v1/keys",
        data=b'{"name": "a\\ud800b"}',
        headers={"X-API-Key": key, "Content-Type": "application/json"},
    )
    assert resp.status_code == 400 and resp.json["error"] == "bad_request"
    assert snapshot(app) == before


def test_api_rotate_grace_with_nul_is_400(app, user, client):
    key = _api_key(user)
    resp = client.post(
        f"/api/v1/keys/{public_id_of(key)}/rotate",
        json={"grace": "now\x00"},
        headers={"X-API-Key": key},
    )
    assert resp.status_code == 400 and resp.json["error"] == "bad_request"


@pytest.mark.parametrize("ch", ["\x00", "\u202e", "\u200b"])
def test_admin_search_boxes_refuse_bad_characters(app, admin, ch):
    for path in ("/admin/users", "/admin/keys", "/admin/audit"):
        resp = admin.client.get(path, query_string={"q": f"x{ch}y"})
        assert resp.status_code == 400, path
    resp = admin.client.get("/admin/audit", query_string={"actor": f"user:1{ch}"})
    assert resp.status_code == 400


def test_emails_are_nfkc_normalised_before_uniqueness(app, portal):
    # Fullwidth letters and the fullwidth @ are the plain address after NFKC.
    resp = portal.register("\uff21lice\uff20Example.COM")
    assert resp.status_code == 302, resp.get_data(as_text=True)
    events = audit_events(app, "user.registered")
    assert [e.details for e in events] == [
        '{"admin":false,"email":"alice@example.com","tier":"basic"}'
    ]
    portal.logout()
    again = Portal(app.test_client()).register("alice@EXAMPLE.com")
    assert again.status_code == 400
    assert "already exists" in again.get_data(as_text=True)
    # Login takes either spelling.
    fullwidth = "\uff41\uff4c\uff49\uff43\uff45@example.com"
    assert Portal(app.test_client()).login(fullwidth, PASSWORD).status_code == 302
    assert Portal(app.test_client()).login("ALICE@example.com", PASSWORD).status_code == 302


@pytest.mark.parametrize("ch", FIELD_CHARS, ids=FIELD_IDS)
def test_validate_scopes_with_bad_characters_are_400(app, user, client, ch):
    _, plaintext = user.create_key(name="svc")
    resp = client.post(
        "/api/v1/keys/validate", json={"key": plaintext, "scopes": ["keys:read", f"a{ch}b"]}
    )
    assert resp.status_code == 400
    assert resp.json["valid"] is False and resp.json["error"] == "bad_request"
    assert "remove it and try again" in resp.json["message"]
    # A held scope still validates.
    ok = client.post("/api/v1/keys/validate", json={"key": plaintext, "scopes": ["keys:read"]})
    assert ok.status_code == 200
    audit_events(app)  # the recorder's batch is written without a database error


def test_domain_functions_refuse_it_too(app, user):
    """Callers other than the forms and the API (CLI, other helpers) get the same rule."""
    from app.keys import lifecycle
    from app.models import User as UserModel
    from app.web import key_policy

    before = snapshot(app)
    with app.test_request_context():
        owner = db.session.scalar(select(UserModel))
        for name in ("a\x00b", "x\u202ey"):
            with pytest.raises(lifecycle.KeyRequestError, match="remove it"):
                lifecycle.create_key(
                    db.session, key_policy(), owner, name=name, scopes=[], lifetime_days=1
                )
            db.session.rollback()
        with pytest.raises(accounts.AccountError):
            accounts.create_user(db.session, None, email="a\u200b@example.com", password="x" * 20)
    assert snapshot(app) == before
