"""The per-key limit override and the monthly quota, exact across 4 workers on
Redis (counted in the charge script's one round trip)."""

from __future__ import annotations

import json
from collections import Counter

from flask import Flask
from support.keys import Keys

from app.extensions import db
from app.keys import policies
from app.models import ApiKey, User

from .test_workers import _hammer, needs_redis

URL = "/api/v1/keys/validate"


def _set_limit(app: Flask, key_id: int, limit: int) -> None:
    with app.app_context():
        key = db.session.get(ApiKey, key_id)
        admin = db.session.get(User, key.user_id)
        policies.set_rate_limit(db.session, key, limit, actor=admin, actor_ip=None)


def _hammer_full(server, body: bytes, n: int) -> list[tuple[int, str | None]]:
    from concurrent.futures import ThreadPoolExecutor

    def one(_: int) -> tuple[int, str | None]:
        status, _, raw = server.post(URL, body)
        return status, json.loads(raw).get("error")

    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(one, range(n)))


@needs_redis
def test_four_workers_grant_exactly_a_keys_own_limit(app: Flask, keys: Keys, served) -> None:
    small = keys.key(name="small")  # basic: 60 a minute, but 25 of its own
    big = keys.key(name="big")  # ... and 90 of its own
    _set_limit(app, small.id, 25)
    _set_limit(app, big.id, 90)
    server = served(workers=4)
    codes = _hammer(server, json.dumps({"key": small.plaintext}).encode(), 60)
    assert codes.count(200) == 25, codes
    assert codes.count(429) == 35
    codes = _hammer(server, json.dumps({"key": big.plaintext}).encode(), 120)
    assert codes.count(200) == 90, codes


@needs_redis
def test_four_workers_grant_exactly_the_monthly_quota(keys: Keys, served) -> None:
    key = keys.key()  # basic: 60 a minute, 30 a month here
    server = served(workers=4, MONTHLY_QUOTAS="basic=30")
    answers = Counter(_hammer_full(server, json.dumps({"key": key.plaintext}).encode(), 50))
    assert answers == {(200, None): 30, (429, "quota_exceeded"): 20}, answers
    status, _, raw = server.post(URL, json.dumps({"key": key.plaintext}).encode())
    assert (status, json.loads(raw)["error"]) == (429, "quota_exceeded")
