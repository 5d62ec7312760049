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

Not the blueprint decorator: its path costs three storage round trips per request
(test, hit, window for the headers), and with Redis on a busy host each cost about
as much as a whole no-op request; `charge` does the same in one pipelined trip
(measured in docs/performance.md).

Strategy: moving-window by default: exact ("60 per any 60 s"), which a customer's
bill and a test of exactness can check. When the storage is unreachable the API fails
closed: 503 `unavailable` (app/api/hooks.py), never an unlimited pass.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import redis.exceptions
from flask import current_app
from limits import RateLimitItem, parse
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter

from app.extensions import limiter
from app.keys.cache import KeyRecord

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

    On Redis with the moving window (the default) this is one pipelined round trip:
    the IP's window, the key's atomic acquire and the key's window for the headers.
    The limiter's decorator path took three (test, hit, window), and under load
    each round trip cost about as much as a whole no-op request (docs/performance.md).
    Raises the storage's error when it is unreachable (the caller answers 503).
    """
    key_item, key_ids = _key_args(record)
    if not limiter.enabled:
        now = time.time()
        return Charge(None, True, key_item.amount, key_item.amount, int(now) + 60, now + 60)
    ip_item, ip_ids = _failure_args(ip or "unknown")
    results = _pipelined(ip_item, ip_ids, key_item, key_ids)
    if results is None:
        strategy = limiter.limiter
        ip_ok = strategy.test(ip_item, *ip_ids)
        allowed = strategy.hit(key_item, *key_ids)
        reset, remaining = strategy.get_window_stats(key_item, *key_ids)
    else:
        ip_ok, allowed, reset, remaining = results
    ip_retry = None
    if not ip_ok:
        ip_retry = failures_exhausted(ip) or 1
    return Charge(ip_retry, allowed, key_item.amount, max(0, remaining), int(reset) + 1, reset)


def _pipelined(
    ip_item: RateLimitItem,
    ip_ids: tuple[str, ...],
    key_item: RateLimitItem,
    key_ids: tuple[str, ...],
) -> tuple[bool, bool, float, int] | None:
    """The three checks in one round trip, or None where that does not apply."""
    storage, strategy = limiter.storage, limiter.limiter
    if not (
        isinstance(storage, RedisStorage)
        and isinstance(strategy, MovingWindowRateLimiter)
        and hasattr(storage, "lua_moving_window")
        and hasattr(storage, "lua_acquire_moving_window")
    ):
        return None
    window_sha = storage.lua_moving_window.sha
    acquire_sha = storage.lua_acquire_moving_window.sha
    ip_key = storage.prefixed_key(ip_item.key_for(*ip_ids))
    key_key = storage.prefixed_key(key_item.key_for(*key_ids))
    ip_exp, key_exp = ip_item.get_expiry(), key_item.get_expiry()
    now = time.time()
    pipe = storage.get_connection().pipeline(transaction=False)
    # evalsha directly: a pipeline given Script objects asks SCRIPT EXISTS every time.
    pipe.evalsha(window_sha, 1, ip_key, now - ip_exp, ip_item.amount)
    pipe.evalsha(acquire_sha, 1, key_key, now, key_item.amount, key_exp, 1)
    pipe.evalsha(window_sha, 1, key_key, now - key_exp, key_item.amount)
    try:
        ip_window, acquired, key_window = pipe.execute()
    except redis.exceptions.NoScriptError:
        return None  # the generic path loads the scripts; the next request is fast
    ip_count = ip_window[1] if ip_window else 0
    start, count = (float(key_window[0]), key_window[1]) if key_window else (now, 0)
    return (
        ip_count <= ip_item.amount - 1,
        bool(acquired),
        start + key_exp,
        key_item.amount - count,
    )


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


def memory_storage_warning(storage_uri: str | None, workers: int) -> str | None:
    """The start-up warning for per-process counters shared by several workers."""
    if workers > 1 and (storage_uri or "memory://").startswith("memory://"):
        return (
            f"RATELIMIT_STORAGE_URI is memory:// with {workers} workers: each worker counts "
            f"on its own, so clients get up to {workers} times every rate limit. Use Redis "
            "(RATELIMIT_STORAGE_URI=redis://...) with more than one worker."
        )
    return None
