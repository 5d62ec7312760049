"""Several workers of the README's server: shared limits on Redis, revocation seen by every worker,
and the start-up warning for per-process (memory://) counters."""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from flask import Flask
from support.keys import Keys

URL = "/api/v1/keys/validate"
REDIS = os.environ.get("RATELIMIT_STORAGE_URI", "memory://").startswith("redis://")
needs_redis = pytest.mark.skipif(
    not REDIS,
    reason="RATELIMIT_STORAGE_URI is not redis://: limits shared by several workers need "
    "Redis (CI's PostgreSQL + Redis run sets it)",
)


def _hammer(server: Any, body: bytes, n: int, threads: int = 16) -> list[int]:
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda _: server.post(URL, body)[0], range(n)))


@needs_redis
def test_four_workers_together_grant_exactly_the_tier_limit(keys: Keys, served: Any) -> None:
    key = keys.key()  # basic: 60 a minute
    server = served(workers=4)
    codes = _hammer(server, json.dumps({"key": key.plaintext}).encode(), 100)
    assert codes.count(200) == 60, codes
    assert codes.count(429) == 40
    # A second key is untouched by the first one's budget.
    other = keys.key(name="other")
    assert server.post(URL, json.dumps({"key": other.plaintext}).encode())[0] == 200


@needs_redis
def test_failed_guesses_are_counted_across_workers(keys: Keys, served: Any) -> None:
    from support.keys import forged_key

    server = served(workers=4, FAILED_VALIDATION_LIMIT="20/minute")
    with ThreadPoolExecutor(16) as pool:
        codes = list(
            pool.map(
                lambda _: server.post(URL, json.dumps({"key": forged_key()}).encode())[0],
                range(40),
            )
        )
    assert codes.count(401) == 20, codes
    assert codes.count(429) == 20


def test_memory_storage_with_several_workers_refuses_to_start(
    app: Flask, keys: Keys, served: Any
) -> None:
    """Issue 22: per-process counters under four workers granted four times every limit
    with only a warning; now the server does not start, and says why."""
    with pytest.raises(RuntimeError) as err:
        served(workers=4, RATELIMIT_STORAGE_URI="memory://", RATELIMIT_ALLOW_PER_WORKER=None)
    assert "RATELIMIT_STORAGE_URI is memory:// with 4 workers" in str(err.value)
    assert "WEB_CONCURRENCY=1" in str(err.value)
    single = served(workers=1, RATELIMIT_STORAGE_URI="memory://")
    key = keys.key()
    assert single.post(URL, json.dumps({"key": key.plaintext}).encode())[0] == 200
    assert "RATELIMIT_STORAGE_URI is memory://" not in single.output()


def test_revocation_reaches_every_worker_within_a_second(keys: Keys, served: Any) -> None:
    key = keys.key(email="ent@example.com", tier="enterprise")
    body = json.dumps({"key": key.plaintext}).encode()
    server = served(workers=2)
    assert set(_hammer(server, body, 40, threads=8)) == {200}  # both workers have it cached
    keys.revoke(key)  # from this process: no worker hears of it directly
    revoked_at = time.monotonic()
    if not REDIS:  # each worker's cache entry lapses within KEY_CACHE_TTL (0.5 s)
        time.sleep(max(0.0, 1.0 - (time.monotonic() - revoked_at)))
    # With Redis the key stamp (app/keys/cache.py) tells both workers at once.
    answers = []
    with ThreadPoolExecutor(8) as pool:
        for status, _, raw in pool.map(lambda _: server.post(URL, body), range(40)):
            answers.append((status, json.loads(raw)["error"]))
    assert set(answers) == {(401, "revoked")}
