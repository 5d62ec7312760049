"""Key management with API keys: list, create, revoke, rotate, usage."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from support.keys import Keys, forged_key
from support.rows import audit_events

from app.extensions import db
from app.models import UsageRecord
from app.usage import recorder

VALIDATE = "/api/v1/keys/validate"


# --- authentication of the management endpoints -------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/keys"),
        ("POST", "/api/v1/keys"),
        ("POST", "/api/v1/keys/abc/revoke"),
        ("POST", "/api/v1/keys/abc/rotate"),
        ("GET", "/api/v1/usage"),
    ],
)
def test_every_management_endpoint_needs_a_key(client: FlaskClient, method: str, path: str) -> None:
    none = client.open(path, method=method)
    assert none.status_code == 401
    assert none.json["error"] == "missing_key"
    assert none.headers["WWW-Authenticate"].startswith("Bearer")
    bad = client.open(path, method=method, headers={"X-API-Key": forged_key()})
    assert bad.status_code == 401
    assert bad.json["error"] == "invalid_key"
    malformed = client.open(path, method=method, headers={"Authorization": "Bearer nope"})
    assert malformed.json["error"] == "malformed_key"


def test_revoked_key_cannot_manage(client: FlaskClient, keys: Keys) -> None:
    key = keys.key()
    keys.revoke(key)
    resp = client.get("/api/v1/keys", headers=key.bearer)
    assert resp.status_code == 401
    assert resp.json["error"] == "revoked"


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("GET", "/api/v1/keys", "keys:read"),
        ("POST", "/api/v1/keys", "keys:write"),
        ("POST", "/api/v1/keys/{id}/revoke", "keys:write"),
        ("POST", "/api/v1/keys/{id}/rotate", "keys:write"),
        ("GET", "/api/v1/usage", "usage:read"),
    ],
)
def test_each_endpoint_needs_its_scope(
    app: Flask, client: FlaskClient, keys: Keys, method: str, path: str, scope: str
) -> None:
    others = tuple(s for s in ("keys:read", "keys:write", "usage:read") if s != scope)
    key = keys.key(scopes=others)
    before = keys.row(key.public_id)
    resp = client.open(path.format(id=key.public_id), method=method, headers=key.bearer, json={})
    assert resp.status_code == 403
    assert resp.json == {
        "error": "insufficient_scope",
        "message": f"this needs a key with the {scope} scope",
        "missing": [scope],
    }
    after = keys.row(key.public_id)
    assert (after.revoked_at, after.expires_at) == (before.revoked_at, before.expires_at)


# --- GET /keys -------------------------------------------------------------------------


def test_list_shows_the_owners_keys_only_without_secrets(client: FlaskClient, keys: Keys) -> None:
    mine = keys.key(name="reader", scopes=("keys:read",))
    second = keys.key(name="second")
    theirs = keys.key(email="bob@example.com", name="bobs")
    resp = client.get("/api/v1/keys", headers=mine.bearer)
    assert resp.status_code == 200
    listed = resp.json["keys"]
    assert [k["key_id"] for k in listed] == [second.public_id, mine.public_id]
    assert theirs.public_id not in resp.get_data(as_text=True)
    assert mine.plaintext not in resp.get_data(as_text=True)
    assert listed[1]["scopes"] == ["keys:read"]
    assert listed[1]["status"] == "active"
    assert listed[1]["tier"] == "basic"
    assert resp.headers["X-RateLimit-Limit"] == "60"


# --- POST /keys ------------------------------------------------------------------------


def test_create_returns_the_secret_once_and_it_works(client: FlaskClient, keys: Keys) -> None:
    admin = keys.key(scopes=("keys:read", "keys:write", "usage:read"))
    resp = client.post(
        "/api/v1/keys",
        headers=admin.bearer,
        json={"name": "ci", "scopes": ["keys:read"], "lifetime_days": 7},
    )
    assert resp.status_code == 201
    assert resp.headers["Cache-Control"] == "no-store"
    made = resp.json
    assert made["name"] == "ci"
    assert made["scopes"] == ["keys:read"]
    assert made["tier"] == "basic"
    expires = datetime.fromisoformat(made["expires_at"].replace("Z", "+00:00"))
    assert abs(expires - (datetime.now(UTC) + timedelta(days=7))) < timedelta(minutes=1)
    check = client.post(VALIDATE, json={"key": made["key"]})
    assert check.json["valid"] is True
    assert check.json["owner_id"] == admin.owner_id
    listing = client.get("/api/v1/keys", headers=admin.bearer).get_data(as_text=True)
    assert made["key_id"] in listing
    assert made["key"] not in listing
    row = keys.row(made["key_id"])
    assert made["key"].split(".")[2] not in repr(bytes(row.secret_hash))
    created = [
        e
        for e in audit_events(client.application, "key.created")
        if e.target.endswith(made["key_id"])
    ]
    assert len(created) == 1


def test_a_key_only_grants_scopes_it_holds(client: FlaskClient, keys: Keys) -> None:
    writer = keys.key(scopes=("keys:write",))
    count = len(
        client.get("/api/v1/keys", headers=keys.key(scopes=("keys:read",)).bearer).json["keys"]
    )
    resp = client.post(
        "/api/v1/keys",
        headers=writer.bearer,
        json={"name": "escalate", "scopes": ["keys:write", "usage:read", "keys:read"]},
    )
    assert resp.status_code == 403
    assert resp.json["error"] == "insufficient_scope"
    assert resp.json["missing"] == ["usage:read", "keys:read"]
    reader = keys.key(name="r2", scopes=("keys:read",))
    assert len(client.get("/api/v1/keys", headers=reader.bearer).json["keys"]) == count + 1
    ok = client.post(
        "/api/v1/keys", headers=writer.bearer, json={"name": "same", "scopes": ["keys:write"]}
    )
    assert ok.status_code == 201


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"name": "x", "tier": "enterprise"},
            "unknown field(s): tier (a key's tier is always its owner's)",
        ),
        (
            {"name": "x", "lifetime_days": 91},
            "lifetime must be between 1 and 90 days on the basic tier",
        ),
        # The documented minimum (app/api/schemas.py) is checked before the tier's rule.
        ({"name": "x", "lifetime_days": 0}, '"lifetime_days" must be at least 1'),
        ({"name": "x", "lifetime_days": "30"}, '"lifetime_days" must be an integer'),
        ({"name": "x", "lifetime_days": True}, '"lifetime_days" must be an integer'),
        ({"scopes": []}, '"name" must be a string'),
        ({"name": "   "}, "name must be 1 to 100 characters"),
        ({"name": "x", "scopes": "keys:write"}, '"scopes" must be a list of strings'),
        ({"name": "x", "scopes": ["Not A Scope"]}, None),
    ],
)
def test_create_refuses_what_is_beyond_the_owner(
    app: Flask, client: FlaskClient, keys: Keys, body: dict[str, Any], message: str | None
) -> None:
    writer = keys.key(scopes=("keys:write", "keys:read"))
    resp = client.post("/api/v1/keys", headers=writer.bearer, json=body)
    assert resp.status_code == 400
    assert resp.json["error"] == "bad_request"
    if message:
        assert resp.json["message"] == message
    assert len(client.get("/api/v1/keys", headers=writer.bearer).json["keys"]) == 1


def test_premium_owner_may_create_longer_keys(client: FlaskClient, keys: Keys) -> None:
    # Past the basic tier's 90 days, and within the creating key's own life (issue 22).
    writer = keys.key(email="p@example.com", tier="premium", scopes=("keys:write",), days=180)
    resp = client.post(
        "/api/v1/keys", headers=writer.bearer, json={"name": "long", "lifetime_days": 179}
    )
    assert resp.status_code == 201
    assert resp.json["tier"] == "premium"


@pytest.mark.parametrize("data", [b"{", b"[]", b"[" * 3000, b"\xff"])
def test_create_with_a_broken_body(client: FlaskClient, keys: Keys, data: bytes) -> None:
    writer = keys.key()
    resp = client.post(
        "/api/v1/keys", headers=writer.bearer, data=data, content_type="application/json"
    )
    assert resp.status_code == 400
    assert resp.json["error"] == "bad_request"


def test_management_bodies_are_capped_at_16_kib(client: FlaskClient, keys: Keys) -> None:
    writer = keys.key()
    resp = client.post(
        "/api/v1/keys", headers=writer.bearer, json={"name": "x", "pad": "y" * 17000}
    )
    assert resp.status_code == 413
    assert resp.json["error"] == "payload_too_large"


# --- revoke / rotate -------------------------------------------------------------------


def test_revoke_own_key(client: FlaskClient, keys: Keys) -> None:
    admin, target = keys.key(name="admin"), keys.key(name="target")
    resp = client.post(f"/api/v1/keys/{target.public_id}/revoke", headers=admin.bearer)
    assert resp.status_code == 200
    assert resp.json["status"] == "revoked"
    assert resp.json["changed"] is True
    assert client.post(VALIDATE, headers=target.bearer).json["error"] == "revoked"
    again = client.post(f"/api/v1/keys/{target.public_id}/revoke", headers=admin.bearer)
    assert again.status_code == 200
    assert again.json["changed"] is False
    assert len(audit_events(client.application, "key.revoked")) == 1


@pytest.mark.parametrize("action", ["revoke", "rotate"])
def test_someone_elses_key_is_404_and_audited_as_critical(
    client: FlaskClient, keys: Keys, action: str
) -> None:
    mallory = keys.key(name="mallory")
    victim = keys.key(email="victim@example.com", name="victim")
    resp = client.post(f"/api/v1/keys/{victim.public_id}/{action}", headers=mallory.bearer)
    assert resp.status_code == 404
    assert resp.json["error"] == "not_found"
    unknown = client.post(
        f"/api/v1/keys/{forged_key().split('.')[1]}/{action}", headers=mallory.bearer
    )
    assert unknown.status_code == 404
    assert unknown.json == resp.json
    events = audit_events(client.application, "access.unauthorized")
    assert [(e.target, e.sensitivity) for e in events] == [(f"key:{victim.public_id}", "critical")]
    assert client.post(VALIDATE, headers=victim.bearer).json["valid"] is True


def test_rotate_issues_a_successor_and_ends_the_old_key(client: FlaskClient, keys: Keys) -> None:
    old = keys.key(name="svc", scopes=("keys:write", "keys:read"))
    resp = client.post(
        f"/api/v1/keys/{old.public_id}/rotate", headers=old.bearer, json={"grace": "now"}
    )
    assert resp.status_code == 201
    assert resp.headers["Cache-Control"] == "no-store"
    new = resp.json
    assert new["rotated_from"] == old.public_id
    assert new["previous"]["key_id"] == old.public_id
    assert new["previous"]["status"] == "expired"
    assert client.post(VALIDATE, headers=old.bearer).json["error"] == "expired"
    assert client.post(VALIDATE, json={"key": new["key"]}).json["scopes"] == [
        "keys:write",
        "keys:read",
    ]
    # A dead key cannot be rotated.
    again = client.post(
        f"/api/v1/keys/{old.public_id}/rotate",
        headers={"X-API-Key": new["key"]},
        json={"grace": "now"},
    )
    assert again.status_code == 409
    assert again.json["error"] == "conflict"


def test_rotate_default_grace_and_bad_grace(client: FlaskClient, keys: Keys) -> None:
    key = keys.key()
    bad = client.post(
        f"/api/v1/keys/{key.public_id}/rotate", headers=key.bearer, json={"grace": "1y"}
    )
    assert bad.status_code == 400
    ok = client.post(f"/api/v1/keys/{key.public_id}/rotate", headers=key.bearer)
    assert ok.status_code == 201
    # 24 hours of grace by default: still working, shown as expiring.
    assert ok.json["previous"]["status"] == "expiring"
    previous_end = datetime.fromisoformat(ok.json["previous"]["expires_at"].replace("Z", "+00:00"))
    assert abs(previous_end - (datetime.now(UTC) + timedelta(hours=24))) < timedelta(minutes=1)
    assert client.post(VALIDATE, headers=key.bearer).json["valid"] is True


# --- usage -------------------------------------------------------------------------------


def test_usage_counts_what_the_key_did(app: Flask, client: FlaskClient, keys: Keys) -> None:
    key = keys.key()
    for _ in range(3):
        client.post(VALIDATE, headers=key.bearer)
    client.post(VALIDATE, json={"key": key.plaintext, "scopes": ["nope"]})
    client.get("/api/v1/keys", headers=key.bearer)
    recorder(app).flush()
    resp = client.get("/api/v1/usage?granularity=minute", headers=key.bearer)
    assert resp.status_code == 200
    body = resp.json
    assert body["key_id"] == key.public_id
    assert body["granularity"] == "minute"
    assert len(body["buckets"]) in (60, 61)
    assert body["total"]["count"] == 5
    assert body["total"]["status"]["2xx"] == 4
    assert body["total"]["status"]["4xx"] == 1
    # The usage request itself was recorded too.
    recorder(app).flush()
    with app.app_context():
        endpoints = db.session.scalars(
            select(UsageRecord.endpoint).where(UsageRecord.key_id == key.id)
        ).all()
    assert sorted(set(endpoints)) == ["/api/v1/keys", "/api/v1/keys/validate", "/api/v1/usage"]


def test_usage_of_another_key_of_mine_by_range(app: Flask, client: FlaskClient, keys: Keys) -> None:
    reader, other = keys.key(name="reader"), keys.key(name="other")
    client.post(VALIDATE, headers=other.bearer)
    recorder(app).flush()
    now = datetime.now(UTC)
    start = (now - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    end = (now + timedelta(hours=1)).isoformat()
    resp = client.get(
        "/api/v1/usage",
        query_string={"key_id": other.public_id, "from": start, "to": end, "granularity": "hour"},
        headers=reader.bearer,
    )
    assert resp.status_code == 200, resp.json
    assert resp.json["key_id"] == other.public_id
    assert resp.json["total"]["count"] == 1
    day = client.get("/api/v1/usage", query_string={"granularity": "day"}, headers=reader.bearer)
    assert day.status_code == 200
    assert len(day.json["buckets"]) in (30, 31)


@pytest.mark.parametrize(
    "query",
    [
        {"granularity": "second"},
        {"from": "yesterday"},
        {"from": "2026-01-01T00:00:00"},
        {"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
        {"from": "2020-01-01T00:00:00Z", "granularity": "minute"},
        {"from": "0001-01-01T00:00:00Z", "to": "9999-12-31T23:59:59Z", "granularity": "day"},
    ],
)
def test_usage_bad_parameters(client: FlaskClient, keys: Keys, query: dict[str, str]) -> None:
    key = keys.key()
    resp = client.get("/api/v1/usage", query_string=query, headers=key.bearer)
    assert resp.status_code == 400, resp.json
    assert resp.json["error"] == "bad_request"


def test_usage_of_someone_elses_key_is_404_and_audited(client: FlaskClient, keys: Keys) -> None:
    mine = keys.key()
    theirs = keys.key(email="other@example.com")
    resp = client.get(f"/api/v1/usage?key_id={theirs.public_id}", headers=mine.bearer)
    assert resp.status_code == 404
    events = audit_events(client.application, "access.unauthorized")
    assert [json.loads(e.details) for e in events] == [{"reason": "key belongs to another user"}]
