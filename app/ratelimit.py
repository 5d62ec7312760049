"""Rate limits of the key-authenticated API, on Flask-Limiter's storage and strategy.

Flask-Limiter owns the configuration (RATELIMIT_STORAGE_URI, RATELIMIT_STRATEGY,
RATELIMIT_KEY_PREFIX, RATELIMIT_ENABLED) and the storage connection; the API's two
limits are counted through its `limits` strategy and storage, so every worker and
host shares them:

- Per key, by its owner's tier (TIER_RATE_LIMITS, per minute), one budget per key
  across the whole API. Only identified keys (the secret matched) are charged:
  knowing a key's public id is not enough to spend its budget.
- Per client IP, failed guesses (FAILED_VALIDATION_LIMIT, default 30/minute): every
  malformed_key or invalid_key answer spends one, atomically and before the answer is
  sent (a guess that finds the budget spent gets 429). Once spent, every
  key-authenticated request from that IP gets the same 429, right key or wrong, so
  guessing is slow. Revoked and expired keys do not count: their holder has the
  secret; they are not guessing.

Not the blueprint decorator: under gunicorn a no-op route behind Flask-Limiter's
dynamic limit reaches 0.45 of the plain no-op's throughput, the no-op plus `charge`
0.61 (its resolution per request and two round trips, hit then window, against one
script in one round trip; docs/performance.md). The counts live under the key the
decorator would use, so Flask-Limiter's tools read them.

Strategy: moving-window by default: exact ("60 per any 60 s"), which a customer's
bill and a test of exactness can check. When the storage is unreachable the API fails
closed: 503 `unavailable` (app/api/hooks.py), never an unlimited pass.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache, partial, wraps
from typing import Any

import redis.exceptions
from flask import Flask, current_app, request
from limits import RateLimitItem, parse
from limits.storage import RedisClusterStorage, RedisStorage
from limits.strategies import MovingWindowRateLimiter

from app.extensions import limiter
from app.keys.cache import KeyRecord
from app.web import API_PREFIX

log = logging.getLogger(__name__)

KEY_SCOPE = "api-key"
FAILURE_SCOPE = "failed-validations"
DEFAULT_FAILURE_LIMIT = "30/minute"


@lru_cache(maxsize=32)
def _item(text: str) -> RateLimitItem:
    return parse(text)


def tier_limit(tier: str, config: dict[str, Any]) -> str:
    """The per-key limit string for a tier; an unknown tier gets the smallest."""
    rates: dict[str, int] = config["TIER_RATE_LIMITS"]
    return f"{rates.get(tier, min(rates.values()))}/minute"


@dataclass(frozen=True, slots=True)
class Charge:
    """What charging one request to a key decided."""

    ip_retry: int | None  # the client IP's failed-guess budget is spent: wait this long
    allowed: bool  # within the key's limit (and counted)
    limit: int
    remaining: int
    reset: int  # unix time (rounded up) when the oldest counted request leaves the window
    reset_at: float = 0.0  # the same, unrounded: Retry-After never overshoots the window
    stamp: bytes | None = None  # the key stamp read in the same trip; None: none shared

    def retry_after(self) -> int:
        """Whole seconds until a slot frees (at least 1, at most the window)."""
        return max(1, math.ceil(self.reset_at - time.time()))


def _blocked() -> dict[str, float]:
    """Client IPs this process saw refused, until when (monotonic): refused again
    without a lookup or a storage round trip, so a blocked guesser cannot make us
    query the database at will. Other workers learn of a block on that IP's next
    request. Kept per app, as the counters' key prefix is."""
    return current_app.extensions.setdefault("keyledger.blocked_ips", {})


def _remember_block(ip: str, seconds: int) -> None:
    blocked = _blocked()
    if len(blocked) > 10_000:
        blocked.clear()
    blocked[ip] = time.monotonic() + seconds


def known_blocked(ip: str | None) -> int | None:
    """Seconds left on a block this process already knows of, without asking storage."""
    blocked = _blocked()
    until = blocked.get(ip or "unknown")
    if until is None:
        return None
    left = until - time.monotonic()
    if left <= 0:
        blocked.pop(ip or "unknown", None)
        return None
    return int(left) + 1


def _key_args(record: KeyRecord) -> tuple[RateLimitItem, tuple[str, ...]]:
    config = current_app.config
    item = _item(tier_limit(record.tier, config))
    prefix = config.get("RATELIMIT_KEY_PREFIX") or ""
    ids = (prefix, record.public_id, KEY_SCOPE) if prefix else (record.public_id, KEY_SCOPE)
    return item, ids


def charge(ip: str | None, record: KeyRecord) -> Charge:
    """Check the IP's failed-guess budget and count one request against the key.

    On Redis with the moving window (the default) this is one script in one round
    trip (`CHARGE_LUA`); elsewhere the strategy's own test, hit and window calls.
    A blocked IP is not charged to the key.
    Raises the storage's error when it is unreachable (the caller answers 503).
    """
    key_item, key_ids = _key_args(record)
    if not limiter.enabled:
        now = time.time()
        return Charge(None, True, key_item.amount, key_item.amount, int(now) + 60, now + 60)
    ip_item, ip_ids = _failure_args(ip or "unknown")
    results = _scripted(ip_item, ip_ids, key_item, key_ids)
    if results is None:
        strategy = limiter.limiter
        if strategy.test(ip_item, *ip_ids):
            allowed = strategy.hit(key_item, *key_ids)
            reset, remaining = strategy.get_window_stats(key_item, *key_ids)
            results = True, allowed, reset, remaining, None
        else:
            results = False, False, 0.0, 0, None
    ip_ok, allowed, reset, remaining, stamp = results
    ip_retry = None
    if not ip_ok:
        ip_retry = failures_exhausted(ip) or 1
    return Charge(
        ip_retry, allowed, key_item.amount, max(0, remaining), int(reset) + 1, reset, stamp
    )


# One round trip, one script: the client IP's failed-guess window, the key's atomic
# moving-window acquire and the key's window for the headers. It reads and writes the
# very lists limits' own moving-window scripts use (newest first, one timestamp per
# request), so Flask-Limiter's tools (test, window stats, reset) see the same counts;
# it also trims them to the window, so the count is LLEN, not a binary search.
# A blocked IP spends nothing of the key's budget. It also returns the key stamp
# (KEYS[3], see app/keys/cache.py), so a worker learns of key changes in the same trip.
CHARGE_LUA = """
local now = tonumber(ARGV[1])
local ip_limit, ip_expiry = tonumber(ARGV[2]), tonumber(ARGV[3])
local limit, expiry = tonumber(ARGV[4]), tonumber(ARGV[5])
-- KEYS: the IP's failures, the key's window, the stamp; or (Redis Cluster, where one
-- script's keys must share a slot) the key's window alone.
local key = KEYS[2] or KEYS[1]
if #KEYS == 3 then
    local ip_entry = redis.call('lindex', KEYS[1], ip_limit - 1)
    if ip_entry and tonumber(ip_entry) >= now - ip_expiry then
        return {0, 0, '0', 0}
    end
end
-- Drop what has left the window from the old end: each entry is dropped once, so this
-- is O(1) per call on average, and the list then holds exactly the window.
local cutoff = now - expiry
local oldest = redis.call('lindex', key, -1)
while oldest and tonumber(oldest) < cutoff do
    redis.call('rpop', key)
    oldest = redis.call('lindex', key, -1)
end
local count = redis.call('llen', key)
local acquired = 0
if count < limit then
    redis.call('lpush', key, ARGV[1])
    redis.call('expire', key, expiry)
    count = count + 1
    acquired = 1
    if not oldest then
        oldest = ARGV[1]
    end
end
if #KEYS == 3 then
    return {1, acquired, oldest or ARGV[1], count, redis.call('get', KEYS[3])}
end
return {1, acquired, oldest or ARGV[1], count}
"""


def _scripted_storage() -> RedisStorage | None:
    """The limiter's Redis storage where CHARGE_LUA (and the key stamp) applies: Redis
    with the moving window; None elsewhere (the generic path, no shared stamp)."""
    storage = limiter.storage
    if isinstance(storage, RedisStorage) and isinstance(limiter.limiter, MovingWindowRateLimiter):
        return storage
    return None


def _scripted(
    ip_item: RateLimitItem,
    ip_ids: tuple[str, ...],
    key_item: RateLimitItem,
    key_ids: tuple[str, ...],
) -> tuple[bool, bool, float, int, bytes | None] | None:
    """Both limits in one EVALSHA, or None where that does not apply (other storage or
    strategy: the generic path)."""
    storage = _scripted_storage()
    if storage is None:
        return None
    now = time.time()
    key_exp = key_item.get_expiry()
    if isinstance(storage, RedisClusterStorage):
        return _scripted_cluster(storage, now, ip_item, ip_ids, key_item, key_ids)
    ip_ok, acquired, oldest, count, *stamp = _evalsha(
        storage,
        storage.prefixed_key(ip_item.key_for(*ip_ids)),
        storage.prefixed_key(key_item.key_for(*key_ids)),
        _stamp_key(storage),
        now,
        ip_item.amount,
        ip_item.get_expiry(),
        key_item.amount,
        key_exp,
    )
    # No stamp set yet reads as b"" (not None: None means "no shared stamp here").
    stamped = (stamp[0] or b"") if stamp else b""
    return bool(ip_ok), bool(acquired), float(oldest) + key_exp, key_item.amount - count, stamped


def _scripted_cluster(
    storage: RedisClusterStorage,
    now: float,
    ip_item: RateLimitItem,
    ip_ids: tuple[str, ...],
    key_item: RateLimitItem,
    key_ids: tuple[str, ...],
) -> tuple[bool, bool, float, int, bytes | None]:
    """Redis Cluster: a script's keys must all live in one slot, and the IP's failures,
    the key's window and the stamp are three slots (by design: counters spread over the
    nodes). So the IP's budget is read first (limits' own test, on the IP's node), then
    CHARGE_LUA runs on the key's window alone, then the stamp is read: three round trips
    instead of one, each atomic where it counts (the key's acquire). A blocked IP is
    still not charged to the key."""
    if not limiter.limiter.test(ip_item, *ip_ids):
        return False, False, 0.0, 0, b""
    client = storage.get_connection()
    # One registered Script per cluster client, kept per app: it loads the script on
    # whichever node holds a key's slot after a NOSCRIPT (failover, resharding).
    scripts = current_app.extensions.setdefault("keyledger.cluster_charge", {})
    script = scripts.get(id(client))
    if script is None or script[0] is not client:
        script = scripts[id(client)] = (client, client.register_script(CHARGE_LUA))
    key_exp = key_item.get_expiry()
    _, acquired, oldest, count = script[1](
        keys=[storage.prefixed_key(key_item.key_for(*key_ids))],
        args=[now, 0, 0, key_item.amount, key_exp],
    )
    stamp = client.get(_stamp_key(storage)) or b""
    return True, bool(acquired), float(oldest) + key_exp, key_item.amount - count, stamp


CHARGE_SHA = hashlib.sha1(CHARGE_LUA.encode(), usedforsecurity=False).hexdigest()
_pinned = threading.local()


def _evalsha(storage: RedisStorage, *args: object) -> Any:
    """EVALSHA of CHARGE_LUA on a connection this thread keeps from the storage's pool.

    Why not redis-py's client call: its pool check-out, retry wrapper and argument
    handling cost as much CPU as the round trip itself (72 vs 36 us per call, measured
    in docs/performance.md). A broken kept connection is dropped and the call tried
    once on a fresh one (what redis-py's own retry does); an unreachable server still
    raises at once, and the API answers 503.
    """
    pool = storage.get_connection().connection_pool
    conn = getattr(_pinned, "conn", None)
    if conn is None or _pinned.pool is not pool or _pinned.pid != os.getpid():
        if conn is not None and _pinned.pid == os.getpid():
            conn.disconnect()  # another app's storage (tests, a reconfigured app)
        conn = pool.make_connection()  # this thread's own; the pool's stay available
        _pinned.conn, _pinned.pool, _pinned.pid, _pinned.used = conn, pool, os.getpid(), False
    reloaded = False
    while True:
        try:
            if not _pinned.used:
                # Connect by the connection's own rule: a Sentinel-managed one asks the
                # sentinels for the master here (send_command alone would connect to
                # its default host, localhost:6379).
                conn.connect()
            conn.send_command("EVALSHA", CHARGE_SHA, 3, *args)
            reply = conn.read_response()
        except redis.exceptions.NoScriptError:
            if reloaded:
                raise
            storage.get_connection().script_load(CHARGE_LUA)  # after a Redis restart
            reloaded = True
            continue
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            conn.disconnect()
            if not _pinned.used:  # a fresh connection failed: the server is unreachable
                raise
            _pinned.used = False  # a kept one went stale: one more try, reconnecting
            continue
        _pinned.used = True
        return reply


# One stamp per Redis, whatever RATELIMIT_KEY_PREFIX says: a worker that counts under
# another prefix must still hear of a revocation (a stranger's change costs a reload).
STAMP_KEY = "keyledger/key-stamp"


def _stamp_key(storage: RedisStorage) -> str:
    return storage.prefixed_key(STAMP_KEY)


def announce_key_change() -> bool:
    """A key or owner changed (committed): a new key stamp, so every worker's key cache
    (app/keys/cache.py) drops its entries on its next charge. False when Redis did not
    take it (logged; the cache retries): the change is committed already."""
    storage = _scripted_storage()
    if storage is None:
        return True
    try:
        storage.get_connection().set(_stamp_key(storage), secrets.token_hex(8))
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        log.error("could not announce a key change to other workers: %s", exc)
        return False
    return True


def _failure_args(ip: str) -> tuple[RateLimitItem, tuple[str, ...]]:
    config = current_app.config
    item = _item(config.get("FAILED_VALIDATION_LIMIT") or DEFAULT_FAILURE_LIMIT)
    prefix = config.get("RATELIMIT_KEY_PREFIX") or ""
    ids = (prefix, ip, FAILURE_SCOPE) if prefix else (ip, FAILURE_SCOPE)
    return item, ids


def failures_exhausted(ip: str | None) -> int | None:
    """Seconds to wait when this IP has spent its failed-guess budget, else None.

    Raises the storage's error when it is unreachable (the caller answers 503).
    """
    if not limiter.enabled:
        return None
    item, ids = _failure_args(ip or "unknown")
    strategy = limiter.limiter
    if strategy.test(item, *ids):
        return None
    reset_at, _ = strategy.get_window_stats(item, *ids)
    retry = max(1, int(reset_at - time.time()) + 1)
    _remember_block(ip or "unknown", retry)
    return retry


def spend_failure(ip: str | None) -> bool:
    """Spend one failed guess; False when the budget was already spent.

    An atomic acquire in the storage, so concurrent workers cannot overshoot. Raises
    the storage's error when it is unreachable (the caller answers 503).
    """
    if not limiter.enabled:
        return True
    item, ids = _failure_args(ip or "unknown")
    return limiter.limiter.hit(item, *ids)


def spare_the_api(app: Flask) -> None:
    """Run Flask-Limiter's app-wide hooks outside the API only.

    Why: they find no limit to apply on the API (its request filter, app/api, exempts
    it: `charge` counts API requests) yet cost ~60 us per API request (before, after
    and teardown; docs/performance.md), a sixth of a validation. The filter stays as the
    documented safety net should a Flask-Limiter release register other hooks.
    """

    def outside_api(hook: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(hook)
        def run(*args: Any) -> Any:
            if request.path.startswith(API_PREFIX):
                return args[0] if args else None  # after_request hooks hand back the response
            return hook(*args)

        return run

    for hooks in (app.before_request_funcs, app.after_request_funcs, app.teardown_request_funcs):
        funcs = hooks.get(None, [])
        for i, hook in enumerate(funcs):
            bound_to = hook.args[0] if isinstance(hook, partial) and hook.args else None
            if getattr(hook, "__self__", bound_to) is limiter:
                funcs[i] = outside_api(hook)


def memory_storage_warning(storage_uri: str | None, workers: int) -> str | None:
    """The start-up warning for per-process counters shared by several workers."""
    if workers > 1 and (storage_uri or "memory://").startswith("memory://"):
        return (
            f"RATELIMIT_STORAGE_URI is memory:// with {workers} workers: each worker counts "
            f"on its own, so clients get up to {workers} times every rate limit. Use Redis "
            "(RATELIMIT_STORAGE_URI=redis://...) with more than one worker."
        )
    return None
