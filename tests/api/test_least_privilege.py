"""A key can never produce, obtain or widen a key beyond itself (issue 22): rotating,
changing the policies of and creating keys with an API key, each route."""

from __future__ import annotations

from datetime import datetime

from flask import Flask
from flask.testing import FlaskClient
from support.keys import ALL_SCOPES, Key, Keys

from app.extensions import db
from app.keys import policies
from app.models import ApiKey, User

KEYS = "/api/v1/keys"
VALIDATE = "/api/v1/keys/validate"
LOOPBACK = "127.0.0.0/8"  # the test client calls from 127.0.0.1


def bind(app: Flask, key: Key, ranges: list[str]) -> None:
    """Give `key` an IP allowlist as its owner would in the portal."""
    with app.app_context():
        row = db.session.get(ApiKey, key.id)
        owner = db.session.get(User, key.owner_id)
        assert row is not None and owner is not None
        policies.set_policies(db.session, row, ip_allowlist=ranges, actor=owner, actor_ip=None)


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def listed(client: FlaskClient, key: Key, reader: Key) -> dict:
    found = [k for k in client.get(KEYS, headers=reader.bearer).json["keys"]]
    return next(k for k in found if k["key_id"] == key.public_id)


# --- rotate -----------------------------------------------------------------------------


def test_a_key_cannot_rotate_a_key_holding_more_scopes(client: FlaskClient, keys: Keys) -> None:
    writer = keys.key(name="writer", scopes=("keys:write",))
    broad = keys.key(name="broad", scopes=ALL_SCOPES)
    resp = client.post(f"{KEYS}/{broad.public_id}/rotate", headers=writer.bearer, json={})
    assert resp.status_code == 403
    assert resp.json["error"] == "insufficient_scope"
    assert resp.json["missing"] == ["keys:read", "usage:read"]
    assert "every scope" in resp.json["message"]
    assert "key" not in resp.json  # no successor's secret
    # Nothing changed: the broad key is not rotated and keeps its expiry.
    shown = listed(client, broad, broad)
    assert shown["status"] == "active"
    assert not [k for k in client.get(KEYS, headers=broad.bearer).json["keys"] if k["rotated_from"]]
    # A key holding every scope of the sibling may rotate it.
    peer = keys.key(name="peer", scopes=ALL_SCOPES)
    ok = client.post(f"{KEYS}/{broad.public_id}/rotate", headers=peer.bearer, json={})
    assert ok.status_code == 201


def test_a_rotated_key_ends_no_later_than_the_rotating_key(client: FlaskClient, keys: Keys) -> None:
    short = keys.key(name="short", days=2)
    long = keys.key(name="long", days=60)
    resp = client.post(f"{KEYS}/{long.public_id}/rotate", headers=short.bearer, json={})
    assert resp.status_code == 201
    mine = listed(client, short, short)
    assert when(resp.json["expires_at"]) <= when(mine["expires_at"])
    # The secret received dies with the key that asked for it.
    valid = client.post(VALIDATE, json={"key": resp.json["key"]})
    assert valid.status_code == 200
    assert when(valid.json["expires_at"]) <= when(mine["expires_at"])


def test_a_bound_key_rotates_only_keys_bound_within_its_allowlist(
    client: FlaskClient, app: Flask, keys: Keys
) -> None:
    bound = keys.key(name="bound")
    bind(app, bound, [LOOPBACK])
    anywhere = keys.key(name="anywhere")
    resp = client.post(f"{KEYS}/{anywhere.public_id}/rotate", headers=bound.bearer, json={})
    assert resp.status_code == 403
    assert resp.json["error"] == "ip_not_allowed"
    assert "allowlist" in resp.json["message"]
    assert listed(client, anywhere, anywhere)["status"] == "active"
    inside = keys.key(name="inside")
    bind(app, inside, ["127.0.0.1"])
    ok = client.post(f"{KEYS}/{inside.public_id}/rotate", headers=bound.bearer, json={})
    assert ok.status_code == 201
    assert ok.json["ip_allowlist"] == ["127.0.0.1/32"]


# --- PATCH policies -----------------------------------------------------------------------


def test_a_key_cannot_change_the_policies_of_a_key_holding_more_scopes(
    client: FlaskClient, app: Flask, keys: Keys
) -> None:
    writer = keys.key(name="writer", scopes=("keys:write",))
    broad = keys.key(name="broad", scopes=ALL_SCOPES)
    bind(app, broad, ["203.0.113.0/24"])
    resp = client.patch(
        f"{KEYS}/{broad.public_id}/policies", headers=writer.bearer, json={"ip_allowlist": None}
    )
    assert resp.status_code == 403
    assert resp.json["error"] == "insufficient_scope"
    assert resp.json["missing"] == ["keys:read", "usage:read"]
    reader = keys.key(name="reader", scopes=("keys:read",))
    assert listed(client, broad, reader)["ip_allowlist"] == ["203.0.113.0/24"]


def test_a_bound_key_cannot_remove_or_widen_an_allowlist(
    client: FlaskClient, app: Flask, keys: Keys
) -> None:
    bound = keys.key(name="bound")
    bind(app, bound, [LOOPBACK])
    other = keys.key(name="other")
    bind(app, other, ["203.0.113.0/24"])
    url = f"{KEYS}/{other.public_id}/policies"
    for body in ({"ip_allowlist": None}, {"ip_allowlist": []}):
        removed = client.patch(url, headers=bound.bearer, json=body)
        assert removed.status_code == 403, body
        assert removed.json["error"] == "ip_not_allowed"
        assert "cannot remove" in removed.json["message"]
    widened = client.patch(url, headers=bound.bearer, json={"ip_allowlist": ["203.0.0.0/16"]})
    assert widened.status_code == 403
    assert "203.0.0.0/16 would widen" in widened.json["message"]
    assert listed(client, other, bound)["ip_allowlist"] == ["203.0.113.0/24"]
    narrowed = client.patch(url, headers=bound.bearer, json={"ip_allowlist": ["203.0.113.8/29"]})
    assert narrowed.status_code == 200
    assert narrowed.json["ip_allowlist"] == ["203.0.113.8/29"]


# --- create -------------------------------------------------------------------------------


def test_a_key_cannot_create_a_key_outliving_it(client: FlaskClient, keys: Keys) -> None:
    short = keys.key(name="short", days=1)
    before = len(client.get(KEYS, headers=short.bearer).json["keys"])
    resp = client.post(KEYS, headers=short.bearer, json={"name": "long", "lifetime_days": 90})
    assert resp.status_code == 400
    assert resp.json["error"] == "bad_request"
    assert "outlives this key" in resp.json["message"]
    assert len(client.get(KEYS, headers=short.bearer).json["keys"]) == before
    # The default lifetime (30 days) is clamped to the caller's expiry.
    default = client.post(KEYS, headers=short.bearer, json={"name": "default"})
    assert default.status_code == 201
    mine = listed(client, short, short)
    assert when(default.json["expires_at"]) <= when(mine["expires_at"])


def test_a_bound_key_creates_only_keys_bound_within_it(
    client: FlaskClient, app: Flask, keys: Keys
) -> None:
    bound = keys.key(name="bound")
    bind(app, bound, [LOOPBACK])
    before = len(client.get(KEYS, headers=bound.bearer).json["keys"])
    outside = client.post(
        KEYS, headers=bound.bearer, json={"name": "wide", "ip_allowlist": ["0.0.0.0/0"]}
    )
    assert outside.status_code == 403
    assert outside.json["error"] == "ip_not_allowed"
    assert "0.0.0.0/0 is outside" in outside.json["message"]
    assert len(client.get(KEYS, headers=bound.bearer).json["keys"]) == before
    inherited = client.post(KEYS, headers=bound.bearer, json={"name": "child"})
    assert inherited.status_code == 201
    assert inherited.json["ip_allowlist"] == [LOOPBACK]
    narrower = client.post(
        KEYS, headers=bound.bearer, json={"name": "one", "ip_allowlist": ["127.0.0.1"]}
    )
    assert narrower.status_code == 201
    assert narrower.json["ip_allowlist"] == ["127.0.0.1/32"]
