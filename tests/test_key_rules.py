"""Keys: a rotated key is not rotated twice (portal and API), rotation links, superseded
marks, hiding revoked and expired keys, editable name and note, failure reasons on the
key page, and the no-scope confirmation."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from support.rows import audit_events, key_row, snapshot
from support.web import public_id_of

from app.extensions import db
from app.models import ApiKey
from app.models._types import utcnow


def _rotate(user, pid: str, grace: str = "24h"):
    return user.submit(f"/keys/{pid}", {"grace": grace}, action=f"/keys/{pid}/rotate")


def _successors(app, pid: str) -> list[str]:
    with app.app_context():
        key = db.session.scalar(select(ApiKey).where(ApiKey.public_id == pid))
        return list(
            db.session.scalars(select(ApiKey.public_id).where(ApiKey.rotated_from_id == key.id))
        )


def test_a_rotated_key_cannot_be_rotated_again_in_the_portal(app, user):
    _, plaintext = user.create_key(name="svc")
    pid = public_id_of(plaintext)
    first = _rotate(user, pid)
    assert first.status_code == 200 and 'id="new-key"' in first.get_data(as_text=True)
    (new_pid,) = _successors(app, pid)
    # The old key is still live for 24 hours, yet its page offers no second rotation.
    page = user.client.get(f"/keys/{pid}").get_data(as_text=True)
    assert "This key was already rotated" in page
    assert f'action="/keys/{pid}/rotate"' not in page
    # A second rotation posted anyway (an old tab) is refused and changes nothing.
    form_page = user.client.get(f"/keys/{new_pid}").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', form_page).group(1)
    before = snapshot(app)
    again = user.client.post(
        f"/keys/{pid}/rotate", data={"csrf_token": token, "grace": "now", "form_token": "t2"}
    )
    assert again.status_code == 302
    assert snapshot(app) == before
    assert _successors(app, pid) == [new_pid]
    shown = user.client.get(again.headers["Location"]).get_data(as_text=True)
    assert "already rotated" in shown
    assert key_row(app, pid).expires_at > utcnow() + timedelta(hours=23)  # grace kept


def test_a_rotated_key_cannot_be_rotated_again_in_the_api(app, user, client):
    _, plaintext = user.create_key(name="svc", scopes=("keys:read", "keys:write"))
    pid = public_id_of(plaintext)
    headers = {"X-API-Key": plaintext}
    first = client.post(f"/api/v1/keys/{pid}/rotate", json={"grace": "1h"}, headers=headers)
    assert first.status_code == 201
    successor = first.json["key_id"]
    before = snapshot(app)
    again = client.post(f"/api/v1/keys/{pid}/rotate", json={"grace": "1h"}, headers=headers)
    assert again.status_code == 409
    assert again.json["error"] == "already_rotated"
    assert again.json["successor"] == successor
    assert successor in again.json["message"]
    assert snapshot(app) == before
    # The successor itself can be rotated.
    third = client.post(
        f"/api/v1/keys/{successor}/rotate",
        json={"grace": "now"},
        headers={"X-API-Key": first.json["key"]},
    )
    assert third.status_code == 201


def test_lineage_links_and_superseded_mark(app, user):
    _, plaintext = user.create_key(name="svc")
    pid = public_id_of(plaintext)
    _rotate(user, pid)
    (new_pid,) = _successors(app, pid)
    old_page = user.client.get(f"/keys/{pid}").get_data(as_text=True)
    assert "Replaced by" in old_page and f'href="/keys/{new_pid}"' in old_page
    new_page = user.client.get(f"/keys/{new_pid}").get_data(as_text=True)
    assert "Rotated from" in new_page and f'href="/keys/{pid}"' in new_page
    listing = user.client.get("/keys").get_data(as_text=True)
    rows = {m[0]: m[1] for m in re.findall(r'href="/keys/(\w+)">svc</a>(.{0,120})', listing)}
    assert "superseded" in rows[pid] and "superseded" not in rows[new_pid]


def test_keys_list_can_hide_revoked_and_expired(app, user):
    user.create_key(name="live-one")
    _, gone = user.create_key(name="revoked-one")
    _, old = user.create_key(name="expired-one")
    gone_pid = public_id_of(gone)
    user.submit(f"/keys/{gone_pid}", {"confirm": "y"}, action=f"/keys/{gone_pid}/revoke")
    with app.app_context():
        db.session.execute(
            update(ApiKey)
            .where(ApiKey.public_id == public_id_of(old))
            .values(expires_at=utcnow() - timedelta(days=1))
        )
        db.session.commit()
    everything = user.client.get("/keys").get_data(as_text=True)
    assert all(n in everything for n in ("live-one", "revoked-one", "expired-one"))
    assert 'href="/keys?show=live"' in everything
    live_only = user.client.get("/keys?show=live").get_data(as_text=True)
    assert "live-one" in live_only
    assert "revoked-one" not in live_only and "expired-one" not in live_only
    assert "2 revoked or expired hidden" in live_only


def test_name_and_note_are_editable_and_audited(app, user):
    _, plaintext = user.create_key(name="svc")
    pid = public_id_of(plaintext)
    resp = user.submit(
        f"/keys/{pid}",
        {"name": "billing worker", "note": "ask ops before revoking"},
        action=f"/keys/{pid}/edit",
    )
    assert resp.status_code == 302
    page = user.client.get(f"/keys/{pid}").get_data(as_text=True)
    assert "billing worker" in page and "ask ops before revoking" in page
    row = key_row(app, pid)
    assert row.name == "billing worker" and row.note == "ask ops before revoking"
    (event,) = audit_events(app, "key.updated", f"key:{pid}")
    assert '"from":"svc"' in event.details and '"to":"billing worker"' in event.details
    assert "ask ops" not in event.details  # the note's text stays out of the trail
    # The API shows the new name at once.
    body = user.client.post("/api/v1/keys/validate", json={"key": plaintext}).json
    assert body["name"] == "billing worker"
    # Saving the same values changes nothing.
    before = snapshot(app)
    user.submit(
        f"/keys/{pid}",
        {"name": "billing worker", "note": "ask ops before revoking"},
        action=f"/keys/{pid}/edit",
    )
    assert snapshot(app) == before


def test_empty_or_long_name_is_refused(app, user):
    _, plaintext = user.create_key(name="svc")
    pid = public_id_of(plaintext)
    before = snapshot(app)
    for data in ({"name": "", "note": ""}, {"name": "x" * 101}, {"name": "ok", "note": "n" * 1001}):
        user.submit(f"/keys/{pid}", data, action=f"/keys/{pid}/edit")
        assert "Not saved." in user.client.get(f"/keys/{pid}").get_data(as_text=True)
    assert snapshot(app) == before and key_row(app, pid).name == "svc"


def test_someone_elses_key_cannot_be_edited(app, user, other):
    _, plaintext = user.create_key(name="svc")
    pid = public_id_of(plaintext)
    resp = other.submit("/keys", {"name": "mine now"}, action=f"/keys/{pid}/edit")
    assert resp.status_code == 404
    assert key_row(app, pid).name == "svc"


def test_key_page_shows_each_failure_reason(app, user, client):
    _, plaintext = user.create_key(name="svc", scopes=("keys:read",))
    pid = public_id_of(plaintext)
    denied = client.post(
        "/api/v1/keys/validate", json={"key": plaintext, "scopes": ["orders:write", "keys:read"]}
    )
    assert denied.status_code == 403
    # The management API refuses a missing scope the same way.
    assert client.post("/api/v1/keys", json={"name": "x"}, headers={"X-API-Key": plaintext}).json[
        "missing"
    ] == ["keys:write"]
    user.submit(f"/keys/{pid}", {"confirm": "y"}, action=f"/keys/{pid}/revoke")
    assert client.post("/api/v1/keys/validate", json={"key": plaintext}).status_code == 401
    audit_events(app)  # writes the recorder's batch
    page = user.client.get(f"/keys/{pid}").get_data(as_text=True)
    activity = page.split('id="activity"')[1]
    assert "<code>insufficient_scope</code>" in activity
    assert "missing orders:write" in activity
    assert "missing keys:write" in activity
    assert "<code>revoked</code>" in activity


def test_rate_limited_calls_show_on_the_key_page(app, user, client):
    _, plaintext = user.create_key(name="svc")
    pid = public_id_of(plaintext)
    limit = app.config["TIER_RATE_LIMITS"]["basic"]
    codes = [
        client.post("/api/v1/keys/validate", json={"key": plaintext}).status_code
        for _ in range(limit + 3)
    ]
    assert codes[-1] == 429
    failures = [
        e
        for e in audit_events(app, "key.rate_limited", f"key:{pid}")
        if "rate_limited" in e.details
    ]
    assert len(failures) == 1  # the first per key, client IP and minute
    activity = user.client.get(f"/keys/{pid}").get_data(as_text=True).split('id="activity"')[1]
    assert "<code>rate_limited</code>" in activity


def test_a_key_with_no_scope_asks_for_confirmation(app, user):
    before = snapshot(app)
    resp, plaintext = user.create_key(name="bare", scopes=())
    assert resp.status_code == 400 and plaintext is None
    html = resp.get_data(as_text=True)
    assert "allows nothing" in html and 'name="no_scope_ok"' in html
    assert snapshot(app) == before
    resp = user.submit(
        "/keys/new",
        {"name": "bare", "custom_scopes": "", "lifetime_days": 30, "no_scope_ok": "y"},
    )
    assert resp.status_code == 200 and 'id="new-key"' in resp.get_data(as_text=True)
    assert len(audit_events(app, "key.created")) == 1


@pytest.mark.concurrent_writers
def test_two_rotations_at_once_leave_one_successor(app, user):
    import threading

    _, plaintext = user.create_key(name="svc", scopes=("keys:read", "keys:write"))
    pid = public_id_of(plaintext)
    barrier = threading.Barrier(4)
    codes: list[int] = []

    def rotate() -> None:
        client = app.test_client()
        barrier.wait()
        resp = client.post(
            f"/api/v1/keys/{pid}/rotate", json={"grace": "1h"}, headers={"X-API-Key": plaintext}
        )
        codes.append(resp.status_code)

    threads = [threading.Thread(target=rotate) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
        assert not t.is_alive(), "a rotation did not finish"
    assert len(_successors(app, pid)) == 1
    assert sorted(codes) == [201, 409, 409, 409], codes
