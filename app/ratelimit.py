"""Rate limits of the key-authenticated API, on Flask-Limiter's configured storage.

Two limits, both in the storage named by RATELIMIT_STORAGE_URI so that every worker
and host shares them:

- Per key, by its owner's tier (TIER_RATE_LIMITS, per minute): a dynamic
  Flask-Limiter limit on the api blueprint, shared by all its routes, so one key has
  one budget. It counts only identified keys (the secret matched): knowing a key's
  public id is not enough to spend its budget.
- Per client IP, failed guesses (FAILED_VALIDATION_LIMIT, default 30/minute): every
  malformed_key or invalid_key answer costs one, taken atomically before the answer
  is sent (a guess that finds the budget spent is answered 429); once spent, every
  key-authenticated request from that IP is refused with 429 before its key is looked
  at, so a right guess looks the same as a wrong one and guessing is slow. Revoked and expired keys
  do not count: their holder has the secret, they are not guessing.

Strategy: moving-window (RATELIMIT_STRATEGY) by default: exact ("60 per any 60 s"),
which is what a customer's bill and a test of exactness can check; the costs are
measured in docs/performance.md.

When the storage is unreachable the API fails closed: 503 `unavailable` (see
app/api/errors), never an unlimited pass.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from flask import current_app
from limits import RateLimitItem, parse

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


def key_limit(identified: Callable[[], KeyRecord | None]) -> Callable[[Any], Any]:
    """The blueprint decorator for the per-key dynamic limit.

    Flask-Limiter evaluates it in its own before_request, before any blueprint hook,
    so `identified` must authenticate lazily and cache its answer on `g`.
    """

    def limit_value() -> str:
        record = identified()
        return tier_limit(record.tier if record else "", current_app.config)

    def key_func() -> str:
        record = identified()
        return record.public_id if record else "-"

    def exempt() -> bool:
        return identified() is None

    return limiter.shared_limit(
        limit_value,
        scope=KEY_SCOPE,
        key_func=key_func,
        exempt_when=exempt,
        error_message="rate_limited",
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
    return max(1, int(reset_at - time.time()) + 1)


def spend_failure(ip: str | None) -> bool:
    """Spend one failed guess; False when the budget was already spent.

    An atomic acquire in the storage, so concurrent workers cannot overshoot. Raises
    the storage's error when it is unreachable (the caller answers 503).
    """
    if not limiter.enabled:
        return True
    item, ids = _failure_args(ip or "unknown")
    return limiter.limiter.hit(item, *ids)


def current_window() -> tuple[int, int, int] | None:
    """(limit, remaining, reset epoch seconds) of the key limit applied to this request."""
    current = limiter.current_limit
    if current is None:
        return None
    return current.limit.amount, max(0, current.remaining), current.reset_at


def memory_storage_warning(storage_uri: str | None, workers: int) -> str | None:
    """The start-up warning for per-process counters shared by several workers."""
    if workers > 1 and (storage_uri or "memory://").startswith("memory://"):
        return (
            f"RATELIMIT_STORAGE_URI is memory:// with {workers} workers: each worker counts "
            f"on its own, so clients get up to {workers} times every rate limit. Use Redis "
            "(RATELIMIT_STORAGE_URI=redis://...) with more than one worker."
        )
    return None
