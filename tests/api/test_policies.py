"""Per-key policies at validation (issue 12): IP allowlist, metadata, an admin's own rate
limit and the plan's monthly quota, set through the JSON API, the portal and the admin
pages, through the real app and database."""

from __future__ import annotations

import calendar
import json
import re
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from support.keys import Keys
from support.rows import audit_events, snapshot
from support.web import Portal, csrf_token

from app import ratelimit

URL = "/api/v1/keys/validate"
V4_CLIENT = {"REMOTE_ADDR": "203.0.113.9"}
V6_CLIENT = {"REMOTE_ADDR": "2001:db8:1::5"}


def _policies(client: FlaskClient, key: Any, body: Any, **kw: Any) -> Any:
    return client.patch(
        f"/api/v1/keys/{key.public_id}/policies", headers=key.bearer, json=body, **kw
    )


def _stored(keys: Keys, key: Any) -> tuple[Any, Any, Any]:
    row = keys.row(key.public_id)
    return row.ip_allowlist, row.meta, row.rate_limit


# --- IP allowlist ----------------------------------------------------------------------


def test_ipv4_allowlist_by_reported_client_ip_and_by_caller(
    app: Flask, client: FlaskClient, keys: Keys
) -> None:
    key = keys.key()
    resp = _policies(client, key, {"ip_allowlist": ["203.0.113.0/24", "198.51.100.7"]})
    assert resp.status_code == 200, resp.json
    assert resp.json["ip_allowlist"] == ["203.0.113.0/24", "198.51.100.7/32"]
    assert resp.json["changed"] is True

    def validate(client_ip: str | None = None, **kw: Any) -> Any:
        body: dict[str, Any] = {"key": key.plaintext}
        if client_ip is not None:
            body["request"] = {"method": "GET", "path": "/v1/x", "client_ip": client_ip}
        return client.post(URL, json=body, **kw)

    assert validate("203.0.113.200").status_code == 200
    assert validate("198.51.100.7").status_code == 200
    assert validate("::ffff:203.0.113.4").status_code == 200  # IPv4-mapped is IPv4
    refused = validate("198.51.100.8")
    assert refused.status_code == 403
    assert refused.json == {
        "valid": False,
        "error": "ip_not_allowed",
        "message": refused.json["message"],
    }
    # Not charged: no budget headers, and the key's window is untouched.
    assert "X-RateLimit-Remaining" not in refused.headers
    # No client_ip reported: the caller's own address (the test client's 127.0.0.1).
    assert validate().json["error"] == "ip_not_allowed"
    assert validate(environ_base=V4_CLIENT).status_code == 200
    remaining = validate("203.0.113.1").json["ratelimit"]["remaining"]
    # The PATCH and five 200s so far; the three refusals spent nothing.
    assert remaining == 60 - 6

    failed = [
        e
        for e in audit_events(app, "key.validation_failed", f"key:{key.public_id}")
        if json.loads(e.details)["error"] == "ip_not_allowed"
    ]
    assert len(failed) == 2
    assert failed[0].outcome == "denied"
    assert {json.loads(e.details)["client_ip"] for e in failed} == {"198.51.100.8", "127.0.0.1"}


def test_ipv6_allowlist(client: FlaskClient, keys: Keys) -> None:
    key = keys.key()
    assert _policies(client, key, {"ip_allowlist": ["2001:db8:1::/48"]}).status_code == 200
    ok = client.post(URL, json={"key": key.plaintext, "request": {"client_ip": "2001:db8:1:ff::1"}})
    assert ok.status_code == 200
    no = client.post(URL, json={"key": key.plaintext, "request": {"client_ip": "2001:db8:2::1"}})
    assert (no.status_code, no.json["error"]) == (403, "ip_not_allowed")
    v4 = client.post(URL, json={"key": key.plaintext, "request": {"client_ip": "203.0.113.9"}})
    assert v4.status_code == 403
    assert client.post(URL, json={"key": key.plaintext}, environ_base=V6_CLIENT).status_code == 200
    assert client.post(URL, json={"key": key.plaintext}).status_code == 403  # 127.0.0.1


def test_the_allowlist_also_guards_management_calls(client: FlaskClient, keys: Keys) -> None:
    key = keys.key()
    assert _policies(client, key, {"ip_allowlist": ["2001:db8:1::/48"]}).status_code == 200
    assert client.get("/api/v1/keys", headers=key.bearer).status_code == 403
    listed = client.get("/api/v1/keys", headers=key.bearer, environ_base=V6_CLIENT)
    assert listed.status_code == 200
    # A bound key cannot clear its own allowlist (issue 22: never widen a key beyond
    # itself); an unbound key of the owner can, and the key works from anywhere again.
    own = _policies(client, key, {"ip_allowlist": None}, environ_base=V6_CLIENT)
    assert own.status_code == 403
    assert own.json["error"] == "ip_not_allowed"
    cleared = client.patch(
        f"/api/v1/keys/{key.public_id}/policies",
        headers=keys.key(name="unbound").bearer,
        json={"ip_allowlist": None},
    )
    assert cleared.json["ip_allowlist"] == []
    assert client.get("/api/v1/keys", headers=key.bearer).status_code == 200


def test_a_bad_reported_client_ip_is_a_400(client: FlaskClient, keys: Keys) -> None:
    key = keys.key()
    for bad in ["300.1.1.1", "", "localhost", 7, "1.2.3.4\x00"]:
        resp = client.post(URL, json={"key": key.plaintext, "request": {"client_ip": bad}})
        assert resp.status_code == 400, bad
        assert "client_ip" in resp.json["message"]


def test_a_rotated_key_keeps_its_policies(client: FlaskClient, keys: Keys) -> None:
    key = keys.key()
    _policies(client, key, {"ip_allowlist": ["127.0.0.0/8"], "meta": {"customer": "c-9"}})
    new = client.post(
        f"/api/v1/keys/{key.public_id}/rotate", headers=key.bearer, json={"grace": "now"}
    ).json
    assert new["ip_allowlist"] == ["127.0.0.0/8"]
    assert new["meta"] == {"customer": "c-9"}
    assert client.post(URL, json={"key": new["key"]}).json["meta"] == {"customer": "c-9"}


# --- metadata --------------------------------------------------------------------------


def test_metadata_round_trip(app: Flask, client: FlaskClient, keys: Keys) -> None:
    key = keys.key()
    assert client.post(URL, json={"key": key.plaintext}).json["meta"] is None
    meta = {"customer": "cus_42", "plan": {"seats": 5, "trial": False}, "name": "Zoë ✓"}
    resp = _policies(client, key, {"meta": meta})
    assert resp.status_code == 200 and resp.json["meta"] == meta
    assert client.post(URL, json={"key": key.plaintext}).json["meta"] == meta
    listed = client.get("/api/v1/keys", headers=key.bearer).json["keys"][0]
    assert listed["meta"] == meta
    assert _stored(keys, key)[1] == meta
    # Unchanged: no second audit event. Cleared with null.
    assert _policies(client, key, {"meta": meta}).json["changed"] is False
    assert _policies(client, key, {"meta": None}).json["meta"] is None
    assert client.post(URL, json={"key": key.plaintext}).json["meta"] is None
    events = audit_events(app, "key.policy_changed", f"key:{key.public_id}")
    assert len(events) == 2
    assert "cus_42" not in "".join(e.details for e in events)  # the owner's data stays out


def test_policies_at_creation(client: FlaskClient, keys: Keys) -> None:
    maker = keys.key()
    made = client.post(
        "/api/v1/keys",
        headers=maker.bearer,
        json={"name": "edge", "ip_allowlist": ["2001:db8::/32"], "meta": {"tenant": 3}},
    )
    assert made.status_code == 201, made.json
    assert made.json["ip_allowlist"] == ["2001:db8::/32"] and made.json["meta"] == {"tenant": 3}
    answer = client.post(URL, json={"key": made.json["key"]}, environ_base=V6_CLIENT).json
    assert answer["meta"] == {"tenant": 3}


BAD = [
    ({"ip_allowlist": ["10.0.0.0/33"]}, "not an IP range"),
    ({"ip_allowlist": ["not-an-ip"]}, "not an IP range"),
    # NUL is refused by the one text check (app/text.py) before the range is parsed.
    ({"ip_allowlist": ["10.0.0.0/8\x00"]}, "control character"),
    ({"ip_allowlist": "10.0.0.0/8"}, "list"),
    ({"ip_allowlist": [5]}, "list"),
    ({"ip_allowlist": ["10.0.0.1"] * 101}, "at most 100"),
    ({"meta": {"x": "y" * 1100}}, "1024 bytes"),
    ({"meta": {"x": "é" * 600}}, "1024 bytes"),  # 1 KiB of UTF-8, not of characters
    ({"meta": ["a", "list"]}, "JSON object"),
    ({"meta": "text"}, "JSON object"),
    ({"meta": 5}, "JSON object"),
    ({"meta": {"nul": "a\x00b"}}, "control character"),
    ({"rate_limit": 5}, "owner_rate_limit"),
    ({"ip_allowlist": ["10.0.0.0/8"], "meta": []}, "JSON object"),  # all or nothing
]


@pytest.mark.parametrize(("body", "message"), BAD)
def test_bad_policies_are_400_and_change_nothing(
    app: Flask, client: FlaskClient, keys: Keys, body: Any, message: str
) -> None:
    key = keys.key()
    _policies(client, key, {"ip_allowlist": ["127.0.0.1"], "meta": {"keep": 1}})
    before, rows = _stored(keys, key), snapshot(app)
    resp = _policies(client, key, body)
    assert resp.status_code == 400
    assert resp.json["error"] == "bad_request"
    assert message in resp.json["message"]
    assert _stored(keys, key) == before
    assert snapshot(app) == rows
    # Nor at creation: no key is made.
    resp = client.post("/api/v1/keys", headers=key.bearer, json={"name": "n", **body})
    assert resp.status_code == 400
    assert snapshot(app) == rows


def test_the_policies_of_someone_elses_key_are_404(client: FlaskClient, keys: Keys) -> None:
    mine = keys.key()
    theirs = keys.key(email="other@example.com")
    resp = client.patch(
        f"/api/v1/keys/{theirs.public_id}/policies", headers=mine.bearer, json={"meta": {"a": 1}}
    )
    assert resp.status_code == 404
    assert _stored(keys, theirs) == (None, None, None)


def test_the_portal_sets_and_shows_policies(app: Flask, user: Portal) -> None:
    _, plaintext = user.create_key()
    public_id = plaintext.split(".")[1]
    page = f"/keys/{public_id}"
    resp = user.submit(
        page,
        {"ip_allowlist": "203.0.113.0/24\n2001:db8::/32", "meta": '{"customer": "c-7"}'},
        action=f"{page}/policies",
    )
    assert resp.status_code == 302
    html = user.client.get(page).get_data(as_text=True)
    assert "Policies saved." in html
    assert "203.0.113.0/24\n2001:db8::/32</textarea>" in html
    assert "c-7" in html
    client = app.test_client()
    ok = client.post(URL, json={"key": plaintext, "request": {"client_ip": "2001:db8::1"}})
    assert ok.json["meta"] == {"customer": "c-7"}
    assert client.post(URL, json={"key": plaintext}).json["error"] == "ip_not_allowed"

    # Bad input: a clear message, nothing stored.
    before = snapshot(app)
    for form in (
        {"ip_allowlist": "10.0.0.0/99", "meta": ""},
        {"ip_allowlist": "", "meta": "{oops"},
        {"ip_allowlist": "", "meta": "[1, 2]"},
        {"ip_allowlist": "", "meta": json.dumps({"x": "y" * 2000})},
    ):
        resp = user.submit(page, form, action=f"{page}/policies")
        assert resp.status_code == 400
        assert "Nothing was changed." in resp.get_data(as_text=True)
    assert snapshot(app) == before
    assert (
        ok.json["meta"]
        == client.post(URL, json={"key": plaintext, "request": {"client_ip": "2001:db8::1"}}).json[
            "meta"
        ]
    )
    # Without the CSRF token: refused.
    resp = user.client.post(f"{page}/policies", data={"ip_allowlist": "", "meta": ""})
    assert resp.status_code == 400
    assert client.post(URL, json={"key": plaintext}).json["error"] == "ip_not_allowed"


# --- an admin's own rate limit ---------------------------------------------------------


def test_an_admin_gives_a_key_its_own_rate_limit(
    app: Flask, client: FlaskClient, keys: Keys, admin: Portal
) -> None:
    key = keys.key()  # basic: 60 a minute
    page = f"/admin/keys/{key.public_id}/limit"
    assert admin.submit(page, {"rate_limit": "5"}).status_code == 302
    assert "5/minute" in admin.client.get(page).get_data(as_text=True)
    codes = [client.post(URL, headers=key.bearer).status_code for _ in range(7)]
    assert codes == [200] * 5 + [429] * 2
    over = client.post(URL, headers=key.bearer)
    assert over.json["error"] == "rate_limited"
    assert over.headers["X-RateLimit-Limit"] == "5"
    # Bigger than the tier's too.
    other = keys.key(name="big")
    admin.submit(f"/admin/keys/{other.public_id}/limit", {"rate_limit": "100"})
    codes = [client.post(URL, headers=other.bearer).status_code for _ in range(100)]
    assert codes == [200] * 100
    assert client.post(URL, headers=other.bearer).status_code == 429
    events = audit_events(app, "key.limit_changed", f"key:{key.public_id}")
    assert [json.loads(e.details)["rate_limit"] for e in events] == [5]
    # Bad input: 400, nothing changed. Empty: the tier's again.
    for bad in ("0", "-3", "1.5", "many", "99999999"):
        resp = admin.submit(page, {"rate_limit": bad})
        assert resp.status_code == 400, bad
        # The refused value stays in the field, beside its error.
        assert f'name="rate_limit" type="number" min="1" max="1000000" value="{bad}"' in (
            resp.get_data(as_text=True)
        )
    assert keys.row(key.public_id).rate_limit == 5
    admin.submit(page, {"rate_limit": ""})
    assert keys.row(key.public_id).rate_limit is None


def test_only_admins_set_a_keys_rate_limit(client: FlaskClient, keys: Keys, user: Portal) -> None:
    key = keys.key()
    resp = user.client.get(f"/admin/keys/{key.public_id}/limit")
    assert resp.status_code == 403
    html = user.client.get("/keys").get_data(as_text=True)
    resp = user.client.post(
        f"/admin/keys/{key.public_id}/limit",
        data={"rate_limit": "999", "csrf_token": csrf_token(html)},
    )
    assert resp.status_code == 403
    assert keys.row(key.public_id).rate_limit is None


# --- the monthly quota -----------------------------------------------------------------


def test_the_monthly_quota_counts_down_then_429(
    app: Flask, client: FlaskClient, keys: Keys
) -> None:
    app.config["MONTHLY_QUOTAS"] = {"basic": 3}
    key = keys.key()
    answers = [client.post(URL, headers=key.bearer) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert [a.json["remaining"] for a in answers] == [2, 1, 0]
    now = datetime.now(UTC)
    following = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
    month_start = calendar.timegm((*following, 1, 0, 0, 0))
    assert answers[0].json["quota"] == {"limit": 3, "remaining": 2, "reset": month_start}
    over = client.post(URL, headers=key.bearer)
    assert over.status_code == 429
    assert over.json["error"] == "quota_exceeded"
    retry = int(over.headers["Retry-After"])
    assert abs(retry - (month_start - time.time())) <= 2
    # The refusal took no slot of the minute: 3 of 60 spent.
    assert over.headers["X-RateLimit-Remaining"] == "57"
    # Management calls by the key spend the same quota.
    assert client.get("/api/v1/keys", headers=key.bearer).json["error"] == "quota_exceeded"
    # Other tiers without a quota are unlimited by it.
    other = keys.key(email="p@example.com", tier="premium")
    assert client.post(URL, headers=other.bearer).json["quota"] is None


def test_a_request_over_the_minute_spends_no_quota(
    app: Flask, client: FlaskClient, keys: Keys
) -> None:
    app.config["MONTHLY_QUOTAS"] = {"basic": 10}
    app.config["TIER_RATE_LIMITS"] = {"basic": 2, "premium": 5, "enterprise": 9}
    key = keys.key()
    codes = [client.post(URL, headers=key.bearer).status_code for _ in range(5)]
    assert codes == [200, 200, 429, 429, 429]
    app.config["TIER_RATE_LIMITS"] = {"basic": 60, "premium": 5, "enterprise": 9}
    assert client.post(URL, headers=key.bearer).json["remaining"] == 7


@pytest.mark.parametrize(
    ("at", "month", "start"),
    [
        ("2026-12-31T23:59:59Z", "2026-12", "2027-01-01T00:00:00Z"),
        ("2027-01-01T00:00:00Z", "2027-01", "2027-02-01T00:00:00Z"),
        ("2028-02-29T12:00:00Z", "2028-02", "2028-03-01T00:00:00Z"),
    ],
)
def test_the_quota_resets_at_the_months_start_utc(at: str, month: str, start: str) -> None:
    ts = datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()
    name, reset = ratelimit.quota_period(ts)
    assert name == month
    assert reset == datetime.fromisoformat(start.replace("Z", "+00:00")).timestamp()


def test_the_quota_counter_lives_in_the_limit_storage(
    app: Flask, client: FlaskClient, keys: Keys
) -> None:
    """Counted under the key's own prefix and month, where every worker reads it."""
    from app.limiter import limiter_of

    app.config["MONTHLY_QUOTAS"] = {"basic": 50}
    key = keys.key()
    for _ in range(4):
        client.post(URL, headers=key.bearer)
    month, _ = ratelimit.quota_period(time.time())
    prefix = app.config["RATELIMIT_KEY_PREFIX"]
    counter = f"LIMITER/{prefix}/{key.public_id}/monthly-quota/{month}"
    with app.app_context():
        assert limiter_of(app).storage.get(counter) == 4
        # Next month's counter is another key: the quota starts afresh at the month's start.
        assert limiter_of(app).storage.get(re.sub(r"\d\d$", "13", counter)) == 0


def test_a_blocked_guesser_gets_429_even_for_a_right_key_outside_its_allowlist(
    client: FlaskClient, keys: Keys, make_app: Any
) -> None:
    """The failed-guess block answers every key alike; a 403 would tell a right guess."""
    from support.keys import forged_key

    key = keys.key()
    _policies(client, key, {"ip_allowlist": ["192.0.2.0/24"]})
    worker = make_app(FAILED_VALIDATION_LIMIT="3/minute").test_client()
    for _ in range(3):
        assert worker.post(URL, json={"key": forged_key()}).status_code == 401
    # The third guess spent the budget; no check has found it spent yet, so this worker
    # asks the storage, as one that has not seen the guesses does.
    resp = worker.post(URL, json={"key": key.plaintext})
    assert (resp.status_code, resp.json["error"]) == (429, "rate_limited")
