"""The keys pages: listing, creation within the tier's limits, once-only secrets,
revocation and rotation with a grace period."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from support.rows import audit_events, count_rows, flush_usage, key_row, snapshot
from support.web import public_id_of

from app.extensions import db


def validate(client, plaintext: str):
    return client.post("/api/v1/keys/validate", json={"key": plaintext})


def set_tier(app, email: str, tier: str) -> None:
    result = app.test_cli_runner().invoke(args=["users", "set-tier", email, tier])
    assert result.exit_code == 0, result.output


def shift_key(app, public_id: str, **columns: datetime) -> None:
    """Move a key's timestamps, as time passing would."""
    sets = ", ".join(f"{name} = :{name}" for name in columns)
    with app.app_context():
        db.session.execute(
            text(f"UPDATE api_key SET {sets} WHERE public_id = :pid"),
            {**columns, "pid": public_id},
        )
        db.session.commit()


# --- the keys page -------------------------------------------------------------------


def test_keys_page_shows_every_column(app, user, client):
    _, plaintext = user.create_key(name="billing worker", scopes=("keys:read", "usage:read"))
    assert validate(client, plaintext).status_code == 200
    flush_usage(app)
    page = client.get("/keys")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    headers = re.findall(r'<th scope="col">([^<]+)</th>', html)
    assert headers == [
        "Name",
        "Key ID",
        "Scopes",
        "Tier",
        "Created",
        "Expires",
        "Last used",
        "Status",
    ]
    pid = public_id_of(plaintext)
    assert "billing worker" in html
    assert f"klk.{pid}" in html
    assert "keys:read" in html and "usage:read" in html
    assert "basic" in html
    assert "from 127.0.0.1" in html  # last used IP
    assert "status-active" in html
    assert plaintext not in html and plaintext.split(".")[2] not in html


def test_keys_page_lists_only_my_keys_newest_first(app, user, other, client):
    user.create_key(name="first")
    user.create_key(name="second")
    other.create_key(name="bobs key")
    html = client.get("/keys").get_data(as_text=True)
    assert html.index("second") < html.index("first")
    assert "bobs key" not in html


def test_empty_keys_page_invites_a_first_key(user, client):
    html = client.get("/keys").get_data(as_text=True)
    assert "No keys yet" in html


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ("fresh", "active"),
        ("soon", "expiring"),
        ("past", "expired"),
        ("revoked", "revoked"),
    ],
)
def test_status_values(app, user, client, setup, expected):
    _, plaintext = user.create_key(name="k", days=30)
    pid = public_id_of(plaintext)
    now = datetime.now(UTC)
    if setup == "soon":  # 27 of its 30 days gone
        shift_key(app, pid, created_at=now - timedelta(days=27), expires_at=now + timedelta(days=3))
    elif setup == "past":
        shift_key(app, pid, expires_at=now - timedelta(minutes=1))
    elif setup == "revoked":
        user.submit(f"/keys/{pid}", {"confirm": "y"}, action=f"/keys/{pid}/revoke")
    html = client.get("/keys").get_data(as_text=True)
    assert re.findall(r'class="badge status-(\w+)"', html) == [expected]
    assert f'status-{expected}">{expected}</span>' in client.get(f"/keys/{pid}").get_data(
        as_text=True
    )


# --- creating keys -------------------------------------------------------------------


def test_new_key_form_offers_known_scopes_and_the_tier_cap(user, client):
    html = client.get("/keys/new").get_data(as_text=True)
    for scope in ("keys:read", "keys:write", "usage:read"):
        assert f'type="checkbox" value="{scope}"' in html
    assert "90 days, the longest your tier allows" in html


def test_create_key_with_known_and_custom_scopes(app, user, client):
    resp, plaintext = user.create_key(
        name="reports",
        scopes=("keys:read", "keys:write"),
        custom="orders:read, reports.export  a  keys:read z" + "9" * 63,
        days=10,
    )
    assert resp.status_code == 200
    assert plaintext
    body = validate(client, plaintext).json
    assert body["scopes"] == [
        "keys:read",
        "keys:write",
        "orders:read",
        "reports.export",
        "a",
        "z" + "9" * 63,
    ]
    expires = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
    assert abs(expires - (datetime.now(UTC) + timedelta(days=10))) < timedelta(minutes=1)
    event = audit_events(app, "key.created", f"key:{public_id_of(plaintext)}")[0]
    assert event.sensitivity == "high"


@pytest.mark.parametrize(
    "custom",
    [
        "Orders:read",
        "1orders",
        "orders read!",
        "_x",
        "z" + "9" * 64,
        "scope/with/slash",
        "ünïcode",
    ],
)
def test_invalid_custom_scope_is_rejected_and_nothing_is_created(app, user, custom):
    before = snapshot(app)
    resp, plaintext = user.create_key(custom=custom)
    assert resp.status_code == 400
    assert plaintext is None
    assert "is not a valid scope" in resp.get_data(as_text=True)
    assert snapshot(app) == before


def test_unknown_checkbox_scope_is_rejected(app, user):
    before = snapshot(app)
    resp, _ = user.create_key(scopes=("admin:everything",))
    assert resp.status_code == 400
    assert snapshot(app) == before


@pytest.mark.parametrize(("tier", "cap"), [("basic", 90), ("premium", 180), ("enterprise", 365)])
def test_lifetime_is_capped_by_tier(app, user, tier, cap):
    if tier != "basic":
        set_tier(app, "alice@example.com", tier)
    assert f"up to {cap} days" in user.client.get("/keys/new").get_data(as_text=True)
    before = count_rows(app, "api_key")
    resp, plaintext = user.create_key(days=cap + 1)
    assert resp.status_code == 400
    assert f"Choose between 1 and {cap} days." in resp.get_data(as_text=True)
    assert count_rows(app, "api_key") == before
    resp, plaintext = user.create_key(days=cap)
    assert resp.status_code == 200 and plaintext
    expires = key_row(app, public_id_of(plaintext)).expires_at
    assert abs(expires - (datetime.now(UTC) + timedelta(days=cap))) < timedelta(minutes=1)


@pytest.mark.parametrize("days", ["0", "-1", "abc", "1.5", "", "9" * 30])
def test_bad_lifetimes_are_rejected(app, user, days):
    before = snapshot(app)
    resp = user.submit("/keys/new", {"name": "k", "scopes": ["keys:read"], "lifetime_days": days})
    assert resp.status_code == 400
    assert snapshot(app) == before


def test_a_keys_tier_follows_its_owner(app, user, client):
    _, plaintext = user.create_key()
    assert validate(client, plaintext).json["tier"] == "basic"
    set_tier(app, "alice@example.com", "enterprise")
    assert validate(client, plaintext).json["tier"] == "enterprise"
    assert "tier-enterprise" in client.get("/keys").get_data(as_text=True)


# --- the secret is shown once --------------------------------------------------------


def test_secret_is_shown_once_with_no_store(app, user, client, admin):
    resp, plaintext = user.create_key(name="once")
    html = resp.get_data(as_text=True)
    assert resp.headers["Cache-Control"] == "no-store"
    assert "You will not see it again" in html
    assert 'data-copy="new-key"' in html
    pid = public_id_of(plaintext)
    secret = plaintext.split(".")[2]
    pages = [client.get("/keys"), client.get(f"/keys/{pid}"), client.get("/keys/new")]
    pages += [admin.client.get(p) for p in ("/admin/users", "/admin/keys", "/admin/audit")]
    with app.app_context():
        uid = db.session.execute(text("SELECT id FROM \"user\" WHERE email='alice@example.com'"))
        uid = uid.scalar_one()
    pages.append(admin.client.get(f"/admin/users/{uid}"))
    for page in pages:
        assert page.status_code == 200, page.request.path
        body = page.get_data(as_text=True)
        assert secret not in body, page.request.path
        assert plaintext[:-6] not in body, page.request.path


def test_resubmitting_the_form_mints_no_second_key(app, user, client):
    page = client.get("/keys/new").get_data(as_text=True)
    from support.web import csrf_token, hidden

    data = {
        "csrf_token": csrf_token(page),
        "form_token": hidden(page, "form_token"),
        "name": "twice",
        "scopes": ["keys:read"],
        "lifetime_days": "5",
    }
    first = client.post("/keys/new", data=data)
    assert first.status_code == 200
    plaintext = re.search(r'id="new-key"[^>]*value="([^"]+)"', first.get_data(as_text=True))[1]
    events_before = len(audit_events(app, "key.created"))
    rows_before = count_rows(app, "api_key")
    second = client.post("/keys/new", data=data)
    assert second.status_code == 302
    assert second.headers["Location"] == f"/keys/{public_id_of(plaintext)}"
    followed = client.get(second.headers["Location"]).get_data(as_text=True)
    assert "already sent" in followed
    assert plaintext.split(".")[2] not in followed
    assert count_rows(app, "api_key") == rows_before == 1
    assert len(audit_events(app, "key.created")) == events_before


# --- revoke --------------------------------------------------------------------------


def test_revoke_needs_the_confirmation_box(app, user, client):
    _, plaintext = user.create_key()
    pid = public_id_of(plaintext)
    before = snapshot(app)
    resp = user.submit(f"/keys/{pid}", {}, action=f"/keys/{pid}/revoke")
    assert resp.status_code == 302
    assert "Tick the confirmation box" in client.get(f"/keys/{pid}").get_data(as_text=True)
    assert snapshot(app) == before
    assert key_row(app, pid).revoked_at is None
    assert validate(client, plaintext).status_code == 200


def test_revoke_needs_csrf(app, user, client):
    _, plaintext = user.create_key()
    pid = public_id_of(plaintext)
    before = snapshot(app)
    resp = client.post(f"/keys/{pid}/revoke", data={"confirm": "y"})
    assert resp.status_code == 400
    assert snapshot(app) == before
    assert key_row(app, pid).revoked_at is None


def test_revoke_stops_the_key_and_is_idempotent(app, user, client):
    _, plaintext = user.create_key()
    pid = public_id_of(plaintext)
    resp = user.submit(f"/keys/{pid}", {"confirm": "y"}, action=f"/keys/{pid}/revoke")
    assert resp.status_code == 302
    assert "is revoked" in client.get(f"/keys/{pid}").get_data(as_text=True)
    revoked_at = key_row(app, pid).revoked_at
    assert revoked_at is not None
    denied = validate(client, plaintext)
    assert denied.status_code == 401
    assert denied.json["valid"] is False and denied.json["error"] == "revoked"

    # The detail page no longer offers the form; a replayed POST changes nothing.
    page = client.get(f"/keys/{pid}").get_data(as_text=True)
    assert f"/keys/{pid}/revoke" not in page
    from support.web import csrf_token

    again = client.post(
        f"/keys/{pid}/revoke", data={"csrf_token": csrf_token(page), "confirm": "y"}
    )
    assert again.status_code == 302
    assert "already revoked" in client.get(f"/keys/{pid}").get_data(as_text=True)
    assert key_row(app, pid).revoked_at == revoked_at
    events = audit_events(app, "key.revoked", f"key:{pid}")
    assert len(events) == 1 and events[0].sensitivity == "high"


# --- rotate --------------------------------------------------------------------------

GRACES = {
    "now": timedelta(0),
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
}


def rotate(user, pid: str, grace: str):
    resp = user.submit(f"/keys/{pid}", {"grace": grace}, action=f"/keys/{pid}/rotate")
    m = re.search(r'id="new-key"[^>]*value="([^"]+)"', resp.get_data(as_text=True))
    return resp, (m.group(1) if m else None)


@pytest.mark.parametrize("grace", list(GRACES))
def test_rotate_with_each_grace_period(app, user, client, grace):
    _, old = user.create_key(name="svc", scopes=("keys:read",), custom="orders:read", days=30)
    old_pid = public_id_of(old)
    resp, new = rotate(user, old_pid, grace)
    assert resp.status_code == 200
    assert resp.headers["Cache-Control"] == "no-store"
    assert new and new != old
    new_pid = public_id_of(new)

    old_row, new_row = key_row(app, old_pid), key_row(app, new_pid)
    assert new_row.name == "svc"
    assert new_row.scopes == ["keys:read", "orders:read"]
    assert new_row.rotated_from_id == old_row.id
    expected_end = datetime.now(UTC) + GRACES[grace]
    assert abs(old_row.expires_at - expected_end) < timedelta(minutes=1)
    assert new_row.expires_at - datetime.now(UTC) > timedelta(days=29)

    ok_new = validate(client, new)
    assert ok_new.status_code == 200
    assert ok_new.json["scopes"] == ["keys:read", "orders:read"]
    assert ok_new.json["tier"] == "basic"
    old_check = validate(client, old)
    if grace == "now":
        assert old_check.status_code == 401 and old_check.json["error"] == "expired"
    else:
        assert old_check.status_code == 200
        # ...until the grace period has passed.
        shift_key(app, old_pid, expires_at=datetime.now(UTC) - timedelta(seconds=1))
        late = validate(client, old)
        assert late.status_code == 401 and late.json["error"] == "expired"

    event = audit_events(app, "key.rotated", f"key:{old_pid}")
    assert len(event) == 1 and event[0].sensitivity == "high"
    assert new.split(".")[2] not in event[0].details


def test_rotate_never_extends_an_old_key(app, user):
    _, old = user.create_key(days=2)
    pid = public_id_of(old)
    before = key_row(app, pid).expires_at
    resp, new = rotate(user, pid, "7d")
    assert resp.status_code == 200 and new
    assert key_row(app, pid).expires_at == before


def test_rotate_rejects_an_unknown_grace_and_a_dead_key(app, user, client):
    _, old = user.create_key()
    pid = public_id_of(old)
    before = snapshot(app)
    resp, new = rotate(user, pid, "1y")
    assert resp.status_code == 302 and new is None
    assert snapshot(app) == before
    user.submit(f"/keys/{pid}", {"confirm": "y"}, action=f"/keys/{pid}/revoke")
    before = snapshot(app)
    from support.web import csrf_token

    page = client.get("/keys").get_data(as_text=True)
    resp = client.post(f"/keys/{pid}/rotate", data={"csrf_token": csrf_token(page), "grace": "now"})
    assert resp.status_code == 302
    assert "only a live key can be rotated" in client.get(f"/keys/{pid}").get_data(as_text=True)
    assert snapshot(app) == before


def test_resubmitted_rotation_mints_no_second_key(app, user, client):
    _, old = user.create_key()
    pid = public_id_of(old)
    page = client.get(f"/keys/{pid}").get_data(as_text=True)
    from support.web import csrf_token, hidden

    data = {"csrf_token": csrf_token(page), "form_token": hidden(page, "form_token"), "grace": "1h"}
    first = client.post(f"/keys/{pid}/rotate", data=data)
    assert first.status_code == 200
    rows = count_rows(app, "api_key")
    second = client.post(f"/keys/{pid}/rotate", data=data)
    assert second.status_code == 302
    assert count_rows(app, "api_key") == rows == 2
    assert len(audit_events(app, "key.rotated")) == 1


def test_a_bad_custom_scope_is_told_beside_a_bad_lifetime(app, user):
    """Every problem at once, each beside its field (issue 18): a bad scope was told
    only after the lifetime was right."""
    before = count_rows(app, "api_key")
    resp, plaintext = user.create_key(custom="Bad Scope!", days=9999)
    assert resp.status_code == 400 and plaintext is None
    page = resp.get_data(as_text=True)
    assert "Choose between 1 and 90 days." in page
    scopes = re.search(r'id="custom_scopes-error">(.*?)</p>', page, re.S)
    assert scopes and "is not a valid scope" in scopes.group(1)
    assert 'value="Bad Scope!"' in page  # what was typed stays
    assert count_rows(app, "api_key") == before
