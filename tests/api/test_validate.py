"""POST /api/v1/keys/validate: every row of the contract table, through the real app."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, select
from support.keys import Keys, forged_key
from support.rows import audit_events

from app.extensions import db
from app.models import ApiKey

URL = "/api/v1/keys/validate"
RL_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
REDIS = os.environ.get("RATELIMIT_STORAGE_URI", "").startswith("redis://")


@contextmanager
def statements(app: Flask) -> Iterator[list[str]]:
    """Every SQL statement the app sends meanwhile (a listener on the real engine)."""
    seen: list[str] = []

    def listen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", listen)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", listen)


# --- 200 -----------------------------------------------------------------------------


def test_live_key_answers_everything_a_service_needs(client: FlaskClient, keys: Keys) -> None:
    key = keys.key(scopes=("keys:read", "usage:read"), name="billing")
    before = int(time.time())
    resp = client.post(URL, json={"key": key.plaintext})
    assert resp.status_code == 200
    body = resp.json
    assert body["valid"] is True
    assert body["key_id"] == key.public_id
    assert body["owner_id"] == key.owner_id
    assert body["name"] == "billing"
    assert body["tier"] == "basic"
    assert body["scopes"] == ["keys:read", "usage:read"]
    assert body["expires_at"].endswith("Z")
    assert body["ratelimit"]["limit"] == 60
    assert body["ratelimit"]["remaining"] == 59
    assert before < body["ratelimit"]["reset"] <= before + 62
    assert resp.headers["X-RateLimit-Limit"] == "60"
    assert resp.headers["X-RateLimit-Remaining"] == "59"
    assert resp.headers["X-RateLimit-Reset"] == str(body["ratelimit"]["reset"])


@pytest.mark.parametrize("where", ["body", "bearer", "x-api-key"])
def test_each_way_of_presenting_the_key(client: FlaskClient, keys: Keys, where: str) -> None:
    key = keys.key()
    kwargs: dict[str, Any] = {
        "body": {"json": {"key": key.plaintext}},
        "bearer": {"headers": {"Authorization": f"Bearer {key.plaintext}"}},
        "x-api-key": {"headers": {"X-API-Key": key.plaintext}},
    }[where]
    resp = client.post(URL, **kwargs)
    assert resp.status_code == 200, resp.json
    assert resp.json["key_id"] == key.public_id


def test_same_key_in_two_places_is_fine_two_different_keys_are_not(
    client: FlaskClient, keys: Keys
) -> None:
    a, b = keys.key(name="a"), keys.key(name="b")
    same = client.post(URL, json={"key": a.plaintext}, headers={"X-API-Key": a.plaintext})
    assert same.status_code == 200
    both = client.post(URL, json={"key": a.plaintext}, headers=b.bearer)
    assert both.status_code == 400
    assert both.json == {
        "valid": False,
        "error": "bad_request",
        "message": "two different keys were given; send one",
    }


def test_scopes_held_or_missing(client: FlaskClient, keys: Keys) -> None:
    key = keys.key(scopes=("keys:read", "reports"))
    ok = client.post(URL, json={"key": key.plaintext, "scopes": ["reports", "keys:read"]})
    assert ok.status_code == 200
    assert client.post(URL, json={"key": key.plaintext, "scopes": []}).status_code == 200
    denied = client.post(
        URL, json={"key": key.plaintext, "scopes": ["reports", "admin", "admin", "usage:read"]}
    )
    assert denied.status_code == 403
    assert denied.json["valid"] is False
    assert denied.json["error"] == "insufficient_scope"
    assert denied.json["missing"] == ["admin", "usage:read"]
    assert denied.headers["X-RateLimit-Limit"] == "60"


def test_reported_request_is_accepted(client: FlaskClient, keys: Keys) -> None:
    key = keys.key()
    resp = client.post(
        URL, json={"key": key.plaintext, "request": {"method": "GET", "path": "/v1/things"}}
    )
    assert resp.status_code == 200


# --- 401 -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "hello",
        "klk.abc.def",
        "Bearer",
        "x" * 5000,
        123,
        12.5,
        True,
        None,
        ["klk"],
        {"key": "klk"},
    ],
    ids=repr,
)
def test_malformed_keys_are_refused_without_a_query(
    app: Flask, client: FlaskClient, raw: object
) -> None:
    with statements(app) as sent:
        resp = client.post(URL, json={"key": raw})
    assert resp.status_code == 401
    assert resp.json["valid"] is False
    assert resp.json["error"] == "malformed_key"
    assert sent == []
    assert not any(h in resp.headers for h in RL_HEADERS)


def test_a_typo_fails_the_checksum_without_a_query(
    app: Flask, client: FlaskClient, keys: Keys
) -> None:
    key = keys.key()
    i = len(key.plaintext) - 10
    typo = key.plaintext[:i] + ("A" if key.plaintext[i] != "A" else "B") + key.plaintext[i + 1 :]
    wrong_prefix = "abc" + key.plaintext[3:]
    with statements(app) as sent:
        for raw in (typo, wrong_prefix, key.plaintext + "x", key.plaintext[:-1]):
            resp = client.post(URL, json={"key": raw})
            assert resp.status_code == 401
            assert resp.json["error"] == "malformed_key"
    assert sent == []


def test_unknown_id_and_wrong_secret_look_the_same(client: FlaskClient, keys: Keys) -> None:
    from app.keys import format as keyformat

    key = keys.key()
    wrong_secret = keyformat.assemble("klk", key.public_id, keyformat.new_secret())
    unknown = client.post(URL, json={"key": forged_key()})
    wrong = client.post(URL, json={"key": wrong_secret})
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.json == wrong.json
    assert unknown.json["error"] == "invalid_key"
    assert dict(unknown.headers).keys() == dict(wrong.headers).keys()
    assert not any(h in wrong.headers for h in RL_HEADERS)


def test_unknown_id_and_wrong_secret_cost_the_same_query(
    app: Flask, client: FlaskClient, keys: Keys
) -> None:
    """The same statement, and a row to decode either way (a stand-in for an unknown
    id), so the database gives no timing difference; scripts/bench_validate.py times it."""
    from app.keys import format as keyformat
    from app.keys.cache import _QUERY, load_record

    key = keys.key()
    wrong_secret = keyformat.assemble("klk", key.public_id, keyformat.new_secret())
    with statements(app) as for_unknown:
        client.post(URL, json={"key": forged_key()})
    with statements(app) as for_wrong:
        client.post(URL, json={"key": wrong_secret})
    assert for_unknown == for_wrong and len(for_unknown) == 1
    unknown_id = forged_key().split(".")[1]
    with app.app_context():
        # The database answers an unknown id with one stand-in row, typed like a key's.
        rows = db.session.connection().execute(_QUERY, {"public_id": unknown_id}).all()
        assert len(rows) == 1 and rows[0][0] == 0 and len(rows[0][7]) == 32
        assert load_record(db.session, unknown_id) is None
        assert load_record(db.session, key.public_id).id == key.id


def _resp_commands(payload: bytes) -> list[tuple[str, ...]]:
    """The commands in a RESP request (one, or a pipeline's several): each one's name
    and, for a script, its number of keys; the rest (key names, values) differs by design
    (the presented id), not by path."""
    commands, pos = [], 0
    while pos < len(payload):
        end = payload.index(b"\r\n", pos)
        count, pos, parts = int(payload[pos + 1 : end]), end + 2, []
        for _ in range(count):
            end = payload.index(b"\r\n", pos)
            size = int(payload[pos + 1 : end])
            parts.append(payload[end + 2 : end + 2 + size])
            pos = end + 2 + size + 2
        name = parts[0].decode().upper()
        commands.append((name, parts[2].decode()) if name in ("EVALSHA", "EVAL") else (name,))
    return commands


@contextmanager
def redis_round_trips(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[list[tuple[str, ...]]]]:
    """Every request sent to Redis meanwhile, by any connection (the limiter's pool or
    a connection kept per thread), as the list of commands it carried: a counting
    wrapper around redis-py's one sending method, which passes everything through."""
    import redis.connection

    trips: list[list[tuple[str, ...]]] = []
    send = redis.connection.AbstractConnection.send_packed_command

    def counted(self: Any, command: Any, check_health: bool = True) -> None:
        chunks = [command] if isinstance(command, (bytes, str)) else command
        payload = b"".join(c.encode() if isinstance(c, str) else bytes(c) for c in chunks)
        trips.append(_resp_commands(payload))
        return send(self, command, check_health)

    with monkeypatch.context() as patched:
        patched.setattr(redis.connection.AbstractConnection, "send_packed_command", counted)
        yield trips


def test_unknown_id_and_wrong_secret_make_the_same_round_trips(
    make_app: Any, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 22: an unknown id and a wrong secret for a known id make the same storage
    round trips, Redis commands and SQL statements, cold (not cached) and warm: the
    counts, not timings, so the test is exact on a busy machine."""
    from app.keys import format as keyformat

    variant = make_app(KEY_CACHE_TTL=0.3, KEY_CACHE_MAX_AGE=30.0)
    client = variant.test_client()
    key, other = keys.key(), keys.key(name="other")
    # Connected: the thread's kept connection (a charge) and the storage's pool (a guess).
    assert client.post(URL, json={"key": other.plaintext}).status_code == 200
    assert client.post(URL, json={"key": forged_key()}).status_code == 401
    wrong_secret = keyformat.assemble("klk", key.public_id, keyformat.new_secret())
    unknown = forged_key()
    seen = {}
    for phase in ("cold", "warm"):
        if phase == "warm":
            time.sleep(0.4)  # past KEY_CACHE_TTL: what lives how long must not differ
        for name, presented in (("unknown", unknown), ("wrong", wrong_secret)):
            with statements(variant) as sql, redis_round_trips(monkeypatch) as trips:
                assert client.post(URL, json={"key": presented}).status_code == 401
            seen[phase, name] = (sql, trips)
    assert seen["cold", "unknown"] == seen["cold", "wrong"]
    assert seen["warm", "unknown"] == seen["warm", "wrong"]
    assert len(seen["cold", "unknown"][0]) == 1  # one lookup each when not cached
    if REDIS:  # the failed-guess budget is checked and spent on Redis either way
        assert seen["cold", "unknown"][1], seen


@pytest.mark.skipif(not REDIS, reason="the shared key stamp lives in Redis")
def test_unknown_id_and_wrong_secret_stay_cached_alike(make_app: Any, keys: Keys) -> None:
    """Issue 22: with Redis, a known id stayed cached for KEY_CACHE_MAX_AGE but an
    unknown one for KEY_CACHE_TTL, so an unknown id cost a query (and measurably more
    time) twice a second. Both now make the same queries: none while cached."""
    from app.keys import format as keyformat

    variant = make_app(KEY_CACHE_TTL=0.3, KEY_CACHE_MAX_AGE=30.0)
    client = variant.test_client()
    key = keys.key()
    assert client.post(URL, json={"key": key.plaintext}).status_code == 200  # the stamp
    wrong_secret = keyformat.assemble("klk", key.public_id, keyformat.new_secret())
    unknown = forged_key()
    for presented in (unknown, wrong_secret):
        assert client.post(URL, json={"key": presented}).status_code == 401
    time.sleep(0.5)  # past KEY_CACHE_TTL, well within KEY_CACHE_MAX_AGE
    with statements(variant) as for_unknown:
        client.post(URL, json={"key": unknown})
    with statements(variant) as for_wrong:
        client.post(URL, json={"key": wrong_secret})
    assert for_unknown == for_wrong == []


def test_revoked_and_expired(client: FlaskClient, keys: Keys) -> None:
    revoked, expired = keys.key(name="r"), keys.key(name="e")
    keys.revoke(revoked)
    keys.expire(expired)
    r = client.post(URL, json={"key": revoked.plaintext})
    e = client.post(URL, headers=expired.bearer)
    assert (r.status_code, r.json["error"], r.json["valid"]) == (401, "revoked", False)
    assert (e.status_code, e.json["error"], e.json["valid"]) == (401, "expired", False)
    # Refused before any limit (issue 22): no budget spent, none announced.
    assert "X-RateLimit-Limit" not in r.headers and "X-RateLimit-Remaining" not in e.headers


def test_a_revoked_key_over_its_limit_is_answered_revoked_and_spends_nothing(
    app: Flask, client: FlaskClient, keys: Keys
) -> None:
    """Issue 22: a revoked key over its rate limit answered "rate_limited" for up to a
    minute, its refusals spent its budget, and "last used" moved for them."""
    from support.rows import flush_usage

    key, live = keys.key(name="dead"), keys.key(name="live")
    assert [client.post(URL, headers=key.bearer).status_code for _ in range(60)] == [200] * 60
    flush_usage(app)
    with app.app_context():
        used_before = db.session.get(ApiKey, key.id).last_used_at
    keys.revoke(key)
    elsewhere = {"REMOTE_ADDR": "198.51.100.9"}  # a new address would move "last used"
    answers = [client.post(URL, headers=key.bearer, environ_base=elsewhere) for _ in range(5)]
    assert {(a.status_code, a.json["error"]) for a in answers} == {(401, "revoked")}
    keys.expire(live)
    assert client.post(URL, headers=live.bearer).json["error"] == "expired"
    flush_usage(app)
    with app.app_context():
        dead = db.session.get(ApiKey, key.id)
        assert (dead.last_used_at, dead.last_used_ip) == (used_before, "127.0.0.1")
        assert db.session.get(ApiKey, live.id).last_used_at is None


# --- 429 -----------------------------------------------------------------------------


def test_the_tier_limit_then_rate_limited_with_retry_after(client: FlaskClient, keys: Keys) -> None:
    key = keys.key()
    statuses = [client.post(URL, headers=key.bearer).status_code for _ in range(60)]
    assert statuses == [200] * 60
    over = client.post(URL, headers=key.bearer)
    assert over.status_code == 429
    assert over.json["valid"] is False
    assert over.json["error"] == "rate_limited"
    assert 0 < int(over.headers["Retry-After"]) <= 60
    assert over.headers["X-RateLimit-Limit"] == "60"
    assert over.headers["X-RateLimit-Remaining"] == "0"
    # Another key of the same owner has its own budget.
    assert client.post(URL, headers=keys.key(name="other").bearer).status_code == 200


@pytest.mark.parametrize(("tier", "limit"), [("premium", 300), ("enterprise", 1200)])
def test_the_limit_follows_the_owners_tier(
    client: FlaskClient, keys: Keys, tier: str, limit: int
) -> None:
    key = keys.key(email=f"{tier}@example.com", tier=tier)
    resp = client.post(URL, json={"key": key.plaintext})
    assert resp.json["tier"] == tier
    assert resp.json["ratelimit"]["limit"] == limit
    assert resp.headers["X-RateLimit-Limit"] == str(limit)


def test_tier_limits_are_configurable(app: Flask, client: FlaskClient, keys: Keys) -> None:
    app.config["TIER_RATE_LIMITS"] = {"basic": 2, "premium": 5, "enterprise": 9}
    key = keys.key()
    assert [client.post(URL, headers=key.bearer).status_code for _ in range(3)] == [200, 200, 429]


def test_flask_limiter_reads_the_same_count_a_decorator_would_keep(
    app: Flask, client: FlaskClient, keys: Keys
) -> None:
    """charge counts in Flask-Limiter's storage under the key a `@limiter.limit` with
    the key's public id and scope "api-key" would use: its tools see our count."""
    from limits import parse

    from app.limiter import limiter_of

    key = keys.key()
    for _ in range(3):
        last = client.post(URL, headers=key.bearer)
    ids = [app.config["RATELIMIT_KEY_PREFIX"]] if app.config["RATELIMIT_KEY_PREFIX"] else []
    with app.app_context():
        _, remaining = limiter_of(app).limiter.get_window_stats(
            parse("60/minute"), *ids, key.public_id, "api-key"
        )
    assert remaining == 57 == int(last.headers["X-RateLimit-Remaining"])


def test_a_known_public_id_cannot_spend_someone_elses_budget(
    client: FlaskClient, keys: Keys
) -> None:
    from app.keys import format as keyformat

    app_ = client.application
    app_.config["FAILED_VALIDATION_LIMIT"] = "1000/minute"
    key = keys.key()
    for _ in range(70):
        wrong = keyformat.assemble("klk", key.public_id, keyformat.new_secret())
        assert client.post(URL, json={"key": wrong}).status_code == 401
    assert client.post(URL, headers=key.bearer).json["ratelimit"]["remaining"] == 59


# --- failed guesses per client IP ----------------------------------------------------


def test_failed_guesses_are_limited_per_ip(client: FlaskClient, keys: Keys) -> None:
    live = keys.key()
    for i in range(30):
        raw = forged_key() if i % 2 else "not-a-key"
        assert client.post(URL, json={"key": raw}).status_code == 401
    blocked = client.post(URL, json={"key": forged_key()})
    assert blocked.status_code == 429
    assert blocked.json["error"] == "rate_limited"
    assert 0 < int(blocked.headers["Retry-After"]) <= 61
    # Refused before the key is looked at: a right guess looks like a wrong one.
    right = client.post(URL, json={"key": live.plaintext})
    assert right.status_code == 429
    assert right.json == blocked.json
    # Another address is not affected, and the refused attempt spent none of the key's
    # budget (its owner does not pay for a blocked address).
    other = client.post(
        URL, json={"key": live.plaintext}, environ_base={"REMOTE_ADDR": "198.51.100.7"}
    )
    assert other.status_code == 200
    assert other.json["ratelimit"]["remaining"] == other.json["ratelimit"]["limit"] - 1


def test_revoked_keys_are_not_counted_as_guesses(client: FlaskClient, keys: Keys) -> None:
    key = keys.key()
    keys.revoke(key)
    client.application.config["TIER_RATE_LIMITS"] = {"basic": 1000, "premium": 1, "enterprise": 1}
    for _ in range(35):
        answer = client.post(URL, headers=key.bearer).json
        assert answer["error"] == "revoked", answer
    assert client.post(URL, json={"key": forged_key()}).status_code == 401


def test_the_failure_limit_is_configurable(client: FlaskClient) -> None:
    client.application.config["FAILED_VALIDATION_LIMIT"] = "3/minute"
    codes = [client.post(URL, json={"key": forged_key()}).status_code for _ in range(4)]
    assert codes == [401, 401, 401, 429]


@pytest.mark.parametrize("hops", [0, 1])
def test_a_spoofed_forwarded_for_does_not_dodge_the_ip_limit(make_app: Any, hops: int) -> None:
    client = make_app(PROXY_FIX_HOPS=hops).test_client()
    codes = []
    for i in range(31):
        # The client writes its own X-Forwarded-For; a trusted proxy appends the peer.
        spoof = f"203.0.113.{i}"
        resp = client.post(
            URL,
            json={"key": forged_key()},
            headers={"X-Forwarded-For": f"{spoof}, 192.0.2.50" if hops else spoof},
            environ_base={"REMOTE_ADDR": "10.0.0.1" if hops else "192.0.2.50"},
        )
        codes.append(resp.status_code)
    assert codes == [401] * 30 + [429]


# --- 400 / 413 -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{not json", "the body is not JSON"),
        (b"[1, 2]", "the body must be a JSON object"),
        (b'"klk"', "the body must be a JSON object"),
        (b"\xff\xfe\x00", "the body is not JSON"),
        (b"[" * 5000, "the body is not JSON"),
        (b"{}", None),
        (b'{"key": "x", "scopes": "keys:read"}', None),
        (b'{"key": "x", "scopes": [1]}', None),
        (b'{"key": "x", "request": []}', None),
        (b'{"key": "x", "request": {"method": 5}}', None),
        (b'{"key": "x", "request": {"path": ""}}', None),
    ],
)
def test_bad_requests(client: FlaskClient, data: bytes, message: str | None) -> None:
    resp = client.post(URL, data=data, content_type="application/json")
    assert resp.status_code == 400
    assert resp.json["valid"] is False
    assert resp.json["error"] == "bad_request"
    if message:
        assert resp.json["message"] == message


def test_a_body_over_16_kib_is_refused(client: FlaskClient, keys: Keys) -> None:
    key = keys.key()
    body = json.dumps({"key": key.plaintext, "pad": "x" * 16 * 1024}).encode()
    resp = client.post(URL, data=body, content_type="application/json")
    assert resp.status_code == 413
    assert resp.json == {
        "valid": False,
        "error": "payload_too_large",
        "message": "the body is limited to 16384 bytes",
    }
    small = json.dumps({"key": key.plaintext, "pad": "x" * 16000}).encode()
    assert client.post(URL, data=small, content_type="application/json").status_code == 200


def test_only_post(client: FlaskClient) -> None:
    resp = client.get(URL)
    assert resp.status_code == 405
    assert resp.json["error"] == "method_not_allowed"


# --- 503 -----------------------------------------------------------------------------


def test_database_unreachable_is_503_quickly(make_app: Any) -> None:
    down = make_app(SQLALCHEMY_DATABASE_URI="postgresql+psycopg://postgres@127.0.0.1:1/nothing")
    started = time.monotonic()
    resp = down.test_client().post(URL, json={"key": forged_key()})
    assert time.monotonic() - started < 2
    assert resp.status_code == 503
    assert resp.json["valid"] is False
    assert resp.json["error"] == "unavailable"
    assert resp.headers["Retry-After"] == "1"


def test_limit_storage_unreachable_fails_closed(make_app: Any, keys: Keys) -> None:
    live = keys.key()
    client = make_app(RATELIMIT_STORAGE_URI="redis://127.0.0.1:1/0").test_client()
    for body in ({"key": live.plaintext}, {"key": forged_key()}):
        started = time.monotonic()
        resp = client.post(URL, json=body)
        assert time.monotonic() - started < 2
        assert resp.status_code == 503, resp.json
        assert resp.json["error"] == "unavailable"
    # Key management fails closed too.
    assert client.get("/api/v1/keys", headers=live.bearer).status_code == 503


@pytest.mark.skipif(not REDIS, reason="needs Redis (RATELIMIT_STORAGE_URI=redis://...)")
def test_a_redis_restart_costs_services_nothing(make_app: Any, keys: Keys) -> None:
    """A restarted Redis forgets its scripts and drops every connection; the next
    validation must still answer 200 (the kept connection is replaced, the script
    loaded again), not a 503."""
    import redis

    live = keys.key()
    name = f"kl-test-{uuid.uuid4().hex[:12]}"
    uri = os.environ["RATELIMIT_STORAGE_URI"]
    app = make_app(
        RATELIMIT_STORAGE_URI=uri,
        RATELIMIT_STORAGE_OPTIONS={"socket_timeout": 0.5, "client_name": name},
    )
    client = app.test_client()
    assert client.post(URL, json={"key": live.plaintext}).status_code == 200
    admin = redis.Redis.from_url(uri)
    admin.script_flush()
    ours = [c["id"] for c in admin.client_list() if c.get("name") == name]
    assert ours, "the app's connections carry the test's client name"
    for client_id in ours:
        admin.client_kill_filter(_id=client_id)
    resp = client.post(URL, json={"key": live.plaintext})
    assert resp.status_code == 200, resp.json
    assert resp.json["ratelimit"]["remaining"] == resp.json["ratelimit"]["limit"] - 2


# --- the hot path writes nothing; usage and audit go through the recorder -----------


def test_validation_writes_nothing_in_the_request(
    app: Flask, client: FlaskClient, keys: Keys
) -> None:
    key = keys.key()
    client.post(URL, headers=key.bearer)  # warm the key cache
    with statements(app) as sent:
        for _ in range(5):
            assert client.post(URL, headers=key.bearer).status_code == 200
        assert client.post(URL, json={"key": forged_key()}).status_code == 401
    assert not [s for s in sent if s.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))]


def test_validations_reach_usage_and_the_audit_trail(
    app: Flask, client: FlaskClient, keys: Keys
) -> None:
    key = keys.key()
    client.post(URL, json={"key": key.plaintext, "request": {"method": "DELETE", "path": "/v1/x"}})
    client.post(URL, json={"key": key.plaintext, "scopes": ["admin"]})
    bad = forged_key()
    client.post(URL, json={"key": bad})
    client.post(URL, json={"key": "not-a-key-but-maybe-a-secret"})

    validated = audit_events(app, "key.validated")
    assert [(e.actor, e.target) for e in validated] == [(f"key:{key.public_id}",) * 2]
    failed = audit_events(app, "key.validation_failed")
    errors = sorted(json.loads(e.details)["error"] for e in failed)
    assert errors == ["insufficient_scope", "invalid_key", "malformed_key"]
    for e in failed:
        assert bad not in e.canonical.decode()
        assert "not-a-key-but-maybe-a-secret" not in e.canonical.decode()
        assert e.sensitivity == "high"

    from app.models import UsageRecord

    with app.app_context():
        rows = db.session.scalars(select(UsageRecord).where(UsageRecord.key_id == key.id)).all()
        seen = sorted((r.method, r.endpoint, r.status) for r in rows)
    assert seen == [("DELETE", "/v1/x", 200), ("POST", "/api/v1/keys/validate", 403)]


# --- the per-process key cache -------------------------------------------------------


def test_a_warm_key_costs_no_query_and_changes_here_show_at_once(make_app: Any, keys: Keys) -> None:
    key = keys.key()
    cached = make_app(KEY_CACHE_TTL=0.5)
    client = cached.test_client()
    assert client.post(URL, headers=key.bearer).status_code == 200
    with statements(cached) as sent:
        assert client.post(URL, headers=key.bearer).status_code == 200
    assert sent == []
    # Revoked through this process (the JSON API): the next answer already knows.
    revoke = client.post(f"/api/v1/keys/{key.public_id}/revoke", headers=key.bearer)
    assert revoke.status_code == 200
    assert client.post(URL, headers=key.bearer).json["error"] == "revoked"


def test_a_revocation_elsewhere_reaches_this_worker_in_time(make_app: Any, keys: Keys) -> None:
    """Another worker revokes: with Redis limits the key stamp tells this worker on its
    very next request; without, its cache entry lapses within KEY_CACHE_TTL."""
    key = keys.key()
    cached = make_app(KEY_CACHE_TTL=0.5)
    client = cached.test_client()
    assert client.post(URL, headers=key.bearer).status_code == 200
    keys.revoke(key)  # through another app: another worker, as far as `cached` can tell
    if not REDIS:
        time.sleep(0.6)
    resp = client.post(URL, headers=key.bearer)
    assert resp.status_code == 401
    assert resp.json["error"] == "revoked"


def test_an_edit_outside_the_app_shows_within_the_cache_age(make_app: Any, keys: Keys) -> None:
    """SQL run outside Keyledger announces nothing: it shows once the entry lapses."""
    key = keys.key()
    cached = make_app(KEY_CACHE_TTL=0.5, KEY_CACHE_MAX_AGE=1.0)
    client = cached.test_client()
    assert client.post(URL, headers=key.bearer).status_code == 200
    keys.expire(key)  # a plain UPDATE, no ORM object: no stamp
    time.sleep(1.1 if REDIS else 0.6)
    assert client.post(URL, headers=key.bearer).json["error"] == "expired"


def test_a_change_announced_while_redis_stalls_reaches_workers_once_it_answers(
    make_app: Any, keys: Keys, private_redis: str
) -> None:
    """The process that revokes cannot reach Redis for a moment: its announcement is
    retried, so the other worker does not keep the key for KEY_CACHE_MAX_AGE."""
    import redis

    key = keys.key()
    cached = make_app(RATELIMIT_STORAGE_URI=private_redis)
    changer = make_app(RATELIMIT_STORAGE_URI=private_redis)
    client = cached.test_client()
    assert client.post(URL, headers=key.bearer).status_code == 200
    redis.Redis.from_url(private_redis).client_pause(1500)  # every other client waits
    paused = time.monotonic()
    Keys(changer).revoke(key)  # committed; the stamp write times out (0.5 s)
    time.sleep(max(0.0, paused + 1.5 - time.monotonic()) + 1.0)  # Redis answered 1 s ago
    resp = client.post(URL, headers=key.bearer)
    assert resp.status_code == 401
    assert resp.json["error"] == "revoked"


def test_a_worker_that_lost_redis_looks_its_keys_up_again(
    make_app: Any, keys: Keys, private_redis: str
) -> None:
    """Changes announced (or lost) while a worker could not hear them: once Redis
    answers, the worker trusts none of its cached keys."""
    import redis

    key = keys.key()
    cached = make_app(RATELIMIT_STORAGE_URI=private_redis)
    client = cached.test_client()
    assert client.post(URL, headers=key.bearer).status_code == 200
    redis.Redis.from_url(private_redis).client_pause(1200)
    paused = time.monotonic()
    assert client.post(URL, headers=key.bearer).status_code == 503
    keys.expire(key)  # what a lost announcement leaves: the database changed, no stamp
    time.sleep(max(0.0, paused + 1.3 - time.monotonic()))
    resp = client.post(URL, headers=key.bearer)
    assert resp.status_code == 401
    assert resp.json["error"] == "expired"
