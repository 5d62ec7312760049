"""Rate limits of the key-authenticated API, on Flask-Limiter's storage and strategy.

Flask-Limiter owns the configuration (RATELIMIT_STORAGE_URI, RATELIMIT_STRATEGY,
RATELIMIT_KEY_PREFIX, RATELIMIT_ENABLED) and the storage connection, one Limiter per
app (app/limiter.py, in app.extensions); the API's two
limits are counted through its `limits` strategy and storage, so every worker and
host shares them:

- Per key, by its owner's tier (TIER_RATE_LIMITS, per minute), one budget per key
  across the whole API. Only identified keys (the secret matched) are charged:
  knowing a key's public id is not enough to spend its budget.
- Per key, an admin's own per-minute limit instead of the tier's (the key's
  `rate_limit`), and its plan's monthly quota (MONTHLY_QUOTAS), counted with the
  minute's window in the same round trip; the month is UTC's. The quota is counted per
  rotation lineage (the chain's first public id), so a successor inherits what its
  predecessors used; an optional quota per account (ACCOUNT_MONTHLY_QUOTAS) caps all
  of an owner's keys together, in the same round trip.
- Per client IP, failed guesses (FAILED_VALIDATION_LIMIT, default 30/minute): every
  malformed_key or invalid_key answer spends one, atomically and before the answer is
  sent (a guess that finds the budget spent gets 429). Once spent, every
  key-authenticated request from that IP gets the same 429, right key or wrong, so
  guessing is slow. Revoked and expired keys do not count: their holder has the
  secret; they are not guessing.

Not the blueprint decorator: it resolves the limit on every request and takes two
round trips (hit, then window) where `charge` runs one script in one; on a route that
does nothing else it costs more than a whole validation may (docs/performance.md,
"Rate limits: `charge`, not the decorator"). The counts live under the key the
decorator would use, so Flask-Limiter's tools read them.

Strategy: moving-window by default: exact ("60 per any 60 s"), which a customer's
bill and a test of exactness can check. When the storage is unreachable the API fails
closed: 503 `unavailable` (app/api/hooks.py), never an unlimited pass.
"""

from __future__ import annotations

import calendar
import hashlib
import logging
import math
import os
import secrets
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import redis.exceptions
from flask import Config, Flask, current_app
from flask_limiter import Limiter
from limits import RateLimitItem, parse
from limits.storage import RedisClusterStorage, RedisStorage
from limits.strategies import MovingWindowRateLimiter

from app.keys.cache import KeyRecord
from app.limiter import limiter_of

log = logging.getLogger(__name__)

KEY_SCOPE = "api-key"
QUOTA_SCOPE = "monthly-quota"
FAILURE_SCOPE = "failed-validations"
DEFAULT_FAILURE_LIMIT = "30/minute"


@lru_cache(maxsize=32)
def _item(text: str) -> RateLimitItem:
    return parse(text)


@lru_cache(maxsize=16_384)
def _counter(item: RateLimitItem, ids: tuple[str, ...]) -> str:
    """limits' name for the counter of `item` and `ids` (`key_for`, before the storage's
    prefix), made once per key or client IP: `key_for` converts and joins every part
    on each call, twice per validation (docs/performance.md, "Fewer calls per
    validation")."""
    return item.key_for(*ids)


def tier_rate(tier: str, config: dict[str, Any]) -> int:
    """Requests a minute a key of this tier may make; an unknown tier gets the smallest."""
    rates: dict[str, int] = config["TIER_RATE_LIMITS"]
    return rates.get(tier, min(rates.values()))


def tier_limit(tier: str, config: dict[str, Any]) -> str:
    """The per-key limit string for a tier."""
    return f"{tier_rate(tier, config)}/minute"


def per_minute(
    tier: str, rate_limit: int | None, config: dict[str, Any], owner_limit: int | None = None
) -> int:
    """A key's requests a minute: an admin's own limit for it; else its owner's own
    limit, never above the tier's (a later downgrade lowers it too); else its tier's.
    The one rule validation charges and every page shows (`effective_limit`)."""
    if rate_limit:
        return rate_limit
    rate = tier_rate(tier, config)
    return min(owner_limit, rate) if owner_limit else rate


def key_limit(record: KeyRecord, config: dict[str, Any]) -> str:
    """The key's per-minute limit as the limiter counts it (the validation path)."""
    return f"{per_minute(record.tier, record.rate_limit, config, record.owner_rate_limit)}/minute"


def monthly_quota(tier: str, config: dict[str, Any]) -> int | None:
    """The tier's monthly request quota per key lineage (MONTHLY_QUOTAS), or None."""
    return (config.get("MONTHLY_QUOTAS") or {}).get(tier) or None


def account_quota(tier: str, config: dict[str, Any]) -> int | None:
    """The tier's monthly request quota per account, all its keys together
    (ACCOUNT_MONTHLY_QUOTAS), or None: none."""
    return (config.get("ACCOUNT_MONTHLY_QUOTAS") or {}).get(tier) or None


@dataclass(frozen=True, slots=True)
class Limit:
    """A key's effective limits, as validation applies them and the pages show them."""

    per_minute: int
    own: bool  # an admin's own limit for this key, not its tier's
    tier: str
    quota: int | None  # requests a month (UTC) per key lineage; None: unlimited
    owner: bool = False  # the owner's own limit (below the tier's) applies
    tier_per_minute: int = 0
    account_quota: int | None = None  # requests a month for all the owner's keys

    def describe(self) -> str:
        """E.g. "10 a minute (set by an administrator)", "60 a minute (basic tier)",
        "20 a minute (this key's own limit; the basic tier allows 60)"."""
        if self.own:
            source = "set by an administrator"
        elif self.owner:
            source = f"this key's own limit; the {self.tier} tier allows {self.tier_per_minute:,}"
        else:
            source = f"{self.tier} tier"
        return f"{self.per_minute:,} a minute ({source})"


def effective_limit(
    tier: str, rate_limit: int | None, config: dict[str, Any], owner_limit: int | None = None
) -> Limit:
    """The limits of a key of this tier with these own limits (an admin's, the owner's)."""
    rate = tier_rate(tier, config)
    return Limit(
        per_minute(tier, rate_limit, config, owner_limit),
        bool(rate_limit),
        tier,
        monthly_quota(tier, config),
        owner=not rate_limit and bool(owner_limit) and owner_limit < rate,
        tier_per_minute=rate,
        account_quota=account_quota(tier, config),
    )


@lru_cache(maxsize=4)
def _month(year: int, month: int) -> tuple[str, int]:
    """The quota counter's name part and the unix time the next month starts (UTC)."""
    following = (year + 1, 1) if month == 12 else (year, month + 1)
    return f"{year:04d}-{month:02d}", calendar.timegm((*following, 1, 0, 0, 0))


def quota_period(now: float) -> tuple[str, int]:
    """(month name, unix time of the next month's start, UTC): the quota resets there."""
    tm = time.gmtime(now)
    return _month(tm.tm_year, tm.tm_mon)


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
    # The monthly quota that binds (the key lineage's or the account's, whichever has
    # less left); None: unlimited.
    quota: int | None = None
    quota_remaining: int | None = None  # left this month, after this request
    quota_reset: int | None = None  # unix time the month ends (UTC)
    quota_exceeded: bool = False  # the month's quota was spent before this request

    def retry_after(self) -> int:
        """Whole seconds until a slot frees (at least 1, at most the window), or until
        the next month when the quota is spent."""
        if self.quota_exceeded and self.quota_reset is not None:
            return seconds_until(self.quota_reset)
        return seconds_until(self.reset_at)


def seconds_until(at: float) -> int:
    """Retry-After for a budget that frees at unix time `at`: whole seconds, at least 1,
    never past `at` by a second or more."""
    return max(1, math.ceil(at - time.time()))


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


def _key_args(record: KeyRecord, config: Config) -> tuple[RateLimitItem, tuple[str, ...]]:
    item = _item(key_limit(record, config))
    prefix = config.get("RATELIMIT_KEY_PREFIX") or ""
    ids = (prefix, record.public_id, KEY_SCOPE) if prefix else (record.public_id, KEY_SCOPE)
    return item, ids


@dataclass(frozen=True, slots=True)
class _Quotas:
    """This month's quota counters of a key: its lineage's and its account's (a limit
    of 0: none; its counter's name then is "")."""

    key: int
    key_counter: str
    account: int
    account_counter: str
    month_end: int


_NO_QUOTAS = _Quotas(0, "", 0, "", 0)


def _quotas(record: KeyRecord, now: float, config: Config) -> _Quotas:
    key = monthly_quota(record.tier, config) or 0
    account = account_quota(record.tier, config) or 0
    if not (key or account):
        return _NO_QUOTAS
    month, month_end = quota_period(now)
    prefix = config.get("RATELIMIT_KEY_PREFIX") or ""
    head = ("LIMITER", prefix) if prefix else ("LIMITER",)
    # The lineage's counter keeps the name a key's own counter always had (its first
    # key's public id), so an unrotated key counts on where it counted before.
    lineage = record.lineage or record.public_id
    return _Quotas(
        key,
        "/".join((*head, lineage, QUOTA_SCOPE, month)) if key else "",
        account,
        "/".join((*head, f"account-{record.user_id}", QUOTA_SCOPE, month)) if account else "",
        month_end,
    )


def charge(ip: str | None, record: KeyRecord) -> Charge:
    """Check the IP's failed-guess budget and count one request against the key: its
    per-minute limit and, where its plan has one, its monthly quota.

    On Redis with the moving window (the default) this is one script in one round
    trip (`CHARGE_LUA`); elsewhere the strategy's own test, hit and window calls and
    the storage's counter. A blocked IP is not charged to the key; a request refused
    by the minute's limit spends no quota, and one refused by the quota no slot of the
    minute. Raises the storage's error when it is unreachable (the caller answers 503).
    """
    # The app looked up once: its config and its Limiter (each read through the
    # `current_app` proxy costs a few calls).
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    config = app.config
    key_item, key_ids = _key_args(record, config)
    now = time.time()
    limiter = limiter_of(app)
    if not limiter.enabled:
        return Charge(None, True, key_item.amount, key_item.amount, int(now) + 60, now + 60)
    ip_item, ip_ids = _failure_args(ip or "unknown", config)
    quotas = _quotas(record, now, config)
    results = _scripted(limiter, ip_item, ip_ids, key_item, key_ids, now, quotas)
    if results is None:
        results = _generic(limiter, ip_item, ip_ids, key_item, key_ids, quotas)
    ip_ok, allowed, reset, remaining, stamp, used, quota_ok, account_used = results
    ip_retry = None
    if not ip_ok:
        ip_retry = failures_exhausted(ip) or 1
    # The quota shown is the one with less left (a spent one refused the request).
    quota, quota_used = quotas.key, used
    if quotas.account and (not quota or quotas.account - account_used < quota - used):
        quota, quota_used = quotas.account, account_used
    month_end = quotas.month_end
    return Charge(
        ip_retry,
        allowed and quota_ok,
        key_item.amount,
        max(0, remaining),
        int(reset) + 1,
        reset,
        stamp,
        quota or None,
        max(0, quota - quota_used) if quota else None,
        month_end if quota else None,
        bool(ip_ok) and not quota_ok,
    )


# (IP within its budget, acquired, window reset, remaining, key stamp, lineage's quota
# used, quota not spent, account's quota used)
_Counted = tuple[bool, bool, float, int, bytes | None, int, bool, int]


def _generic(
    limiter: Limiter,
    ip_item: RateLimitItem,
    ip_ids: tuple[str, ...],
    key_item: RateLimitItem,
    key_ids: tuple[str, ...],
    quotas: _Quotas,
) -> _Counted:
    """What CHARGE_LUA does, through the limiter's strategy and storage: any storage,
    any strategy. The quotas are taken first with atomic increments and handed back
    when one of them or the minute's limit refuses, so concurrent requests cannot
    overshoot them."""
    strategy = limiter.limiter
    if not strategy.test(ip_item, *ip_ids):
        return False, False, 0.0, 0, None, 0, True, 0
    storage = limiter.storage
    expiry = max(1, quotas.month_end - int(time.time()) + 3600)
    both = ((quotas.key, quotas.key_counter), (quotas.account, quotas.account_counter))
    taken = [(q, c) for q, c in both if q]
    counts = {c: storage.incr(c, expiry) for _, c in taken}
    over = any(counts[c] > q for q, c in taken)
    allowed = not over and strategy.hit(key_item, *key_ids)
    if not allowed:
        for _, c in taken:
            counts[c] = storage.incr(c, expiry, -1)
    reset, remaining = strategy.get_window_stats(key_item, *key_ids)
    used = counts.get(quotas.key_counter, 0)
    account_used = counts.get(quotas.account_counter, 0)
    return True, allowed, reset, remaining, None, used, not over, account_used


# One round trip, one script: the client IP's failed-guess window, the key's atomic
# moving-window acquire and the key's window for the headers. It reads and writes the
# very lists limits' own moving-window scripts use (newest first, one timestamp per
# request), so Flask-Limiter's tools (test, window stats, reset) see the same counts;
# it also trims them to the window, so the count is LLEN, not a binary search.
# A blocked IP spends nothing of the key's budget. It also returns the key stamp
# (KEYS[3], see app/keys/cache.py), so a worker learns of key changes in the same trip.
# With a monthly quota (ARGV[6] > 0) it also reads the month's counter of the key's
# lineage (KEYS[4], which expires after the month, ARGV[7]), and with an account quota
# (ARGV[8] > 0) the account's (KEYS[5]): a spent quota takes no slot of the minute, and
# a request the minute refuses spends no quota.
CHARGE_LUA = """
local now = tonumber(ARGV[1])
local ip_limit, ip_expiry = tonumber(ARGV[2]), tonumber(ARGV[3])
local limit, expiry = tonumber(ARGV[4]), tonumber(ARGV[5])
local quota = tonumber(ARGV[6] or '0')
local account_quota = tonumber(ARGV[8] or '0')
-- KEYS: the IP's failures, the key's window, the stamp, the month's counters (lineage,
-- account); or (Redis Cluster, where one script's keys must share a slot) the key's
-- window alone.
local full = #KEYS == 5
local key = full and KEYS[2] or KEYS[1]
if full then
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
local used, account_used = 0, 0
-- The full form only: the cluster path never passes a quota.
if quota > 0 then
    used = tonumber(redis.call('get', KEYS[4]) or '0')
end
if account_quota > 0 then
    account_used = tonumber(redis.call('get', KEYS[5]) or '0')
end
if (quota > 0 and used >= quota) or (account_quota > 0 and account_used >= account_quota) then
    return {1, 0, oldest or ARGV[1], count, redis.call('get', KEYS[3]), used, 0, account_used}
end
local acquired = 0
if count < limit then
    redis.call('lpush', key, ARGV[1])
    redis.call('expire', key, expiry)
    count = count + 1
    acquired = 1
    if not oldest then
        oldest = ARGV[1]
    end
    if quota > 0 then
        used = redis.call('incr', KEYS[4])
        if used == 1 then
            redis.call('expireat', KEYS[4], ARGV[7])
        end
    end
    if account_quota > 0 then
        account_used = redis.call('incr', KEYS[5])
        if account_used == 1 then
            redis.call('expireat', KEYS[5], ARGV[7])
        end
    end
end
if full then
    local stamp = redis.call('get', KEYS[3])
    return {1, acquired, oldest or ARGV[1], count, stamp, used, 1, account_used}
end
return {1, acquired, oldest or ARGV[1], count}
"""


def _scripted_storage(limiter: Limiter) -> RedisStorage | None:
    """The limiter's Redis storage where CHARGE_LUA (and the key stamp) applies: Redis
    with the moving window; None elsewhere (the generic path, no shared stamp)."""
    storage = limiter.storage
    if isinstance(storage, RedisStorage) and isinstance(limiter.limiter, MovingWindowRateLimiter):
        return storage
    return None


def _scripted(
    limiter: Limiter,
    ip_item: RateLimitItem,
    ip_ids: tuple[str, ...],
    key_item: RateLimitItem,
    key_ids: tuple[str, ...],
    now: float,
    quotas: _Quotas,
) -> _Counted | None:
    """Both limits and the quotas in one EVALSHA, or None where that does not apply
    (other storage or strategy: the generic path)."""
    storage = _scripted_storage(limiter)
    if storage is None:
        return None
    key_exp = key_item.get_expiry()
    if isinstance(storage, RedisClusterStorage):
        if quotas.key or quotas.account:
            return None  # the quotas' counters are in other slots: the generic path
        return _scripted_cluster(limiter, storage, now, ip_item, ip_ids, key_item, key_ids)
    window_key = storage.prefixed_key(_counter(key_item, key_ids))
    ip_ok, acquired, oldest, count, *rest = _evalsha(
        storage,
        storage.prefixed_key(_counter(ip_item, ip_ids)),
        window_key,
        _stamp_key(storage),
        storage.prefixed_key(quotas.key_counter) if quotas.key else window_key,
        storage.prefixed_key(quotas.account_counter) if quotas.account else window_key,
        now,
        ip_item.amount,
        ip_item.get_expiry(),
        key_item.amount,
        key_exp,
        quotas.key,
        quotas.month_end + 3600,
        quotas.account,
    )
    # No stamp set yet reads as b"" (not None: None means "no shared stamp here").
    stamped = (rest[0] or b"") if rest else b""
    used, quota_ok, account_used = (
        (int(rest[1]), bool(rest[2]), int(rest[3])) if len(rest) > 3 else (0, True, 0)
    )
    return (
        bool(ip_ok),
        bool(acquired),
        float(oldest) + key_exp,
        key_item.amount - count,
        stamped,
        used,
        quota_ok,
        account_used,
    )


def _scripted_cluster(
    limiter: Limiter,
    storage: RedisClusterStorage,
    now: float,
    ip_item: RateLimitItem,
    ip_ids: tuple[str, ...],
    key_item: RateLimitItem,
    key_ids: tuple[str, ...],
) -> _Counted:
    """Redis Cluster: a script's keys must all live in one slot, and the IP's failures,
    the key's window and the stamp are three slots (by design: counters spread over the
    nodes). So the IP's budget is read first (limits' own test, on the IP's node), then
    CHARGE_LUA runs on the key's window alone, then the stamp is read: three round trips
    instead of one, each atomic where it counts (the key's acquire). A blocked IP is
    still not charged to the key."""
    if not limiter.limiter.test(ip_item, *ip_ids):
        return False, False, 0.0, 0, b"", 0, True, 0
    client = storage.get_connection()
    # One registered Script per cluster client, kept per app: it loads the script on
    # whichever node holds a key's slot after a NOSCRIPT (failover, resharding).
    scripts = current_app.extensions.setdefault("keyledger.cluster_charge", {})
    script = scripts.get(id(client))
    if script is None or script[0] is not client:
        script = scripts[id(client)] = (client, client.register_script(CHARGE_LUA))
    key_exp = key_item.get_expiry()
    _, acquired, oldest, count = script[1](
        keys=[storage.prefixed_key(_counter(key_item, key_ids))],
        args=[now, 0, 0, key_item.amount, key_exp, 0, 0],
    )
    stamp = client.get(_stamp_key(storage)) or b""
    return (
        True,
        bool(acquired),
        float(oldest) + key_exp,
        key_item.amount - count,
        stamp,
        0,
        True,
        0,
    )


CHARGE_SHA = hashlib.sha1(CHARGE_LUA.encode(), usedforsecurity=False).hexdigest()
_pinned = threading.local()


def _evalsha(storage: RedisStorage, *args: object) -> Any:
    """EVALSHA of CHARGE_LUA on a connection this thread keeps from the storage's pool.

    Why not redis-py's client call: its pool check-out, retry wrapper and argument
    handling cost the worker as much CPU as the call itself (docs/performance.md,
    "Redis: a connection kept per thread"). A broken kept connection is dropped and the call tried
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
            conn.send_command("EVALSHA", CHARGE_SHA, 5, *args)
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


def announce_key_change(app: Flask) -> bool:
    """A key or owner changed (committed): a new key stamp, so every worker of `app`
    (its key cache, app/keys/cache.py) drops its entries on its next charge. False when
    Redis did not take it (logged; the cache retries, from a thread of its own: hence
    the app as an argument). The change is committed already."""
    storage = _scripted_storage(limiter_of(app))
    if storage is None:
        return True
    try:
        storage.get_connection().set(_stamp_key(storage), secrets.token_hex(8))
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        log.error("could not announce a key change to other workers: %s", exc)
        return False
    return True


def _failure_args(ip: str, config: Config | None = None) -> tuple[RateLimitItem, tuple[str, ...]]:
    config = config or current_app.config
    item = _item(config.get("FAILED_VALIDATION_LIMIT") or DEFAULT_FAILURE_LIMIT)
    return item, _budget_ids(ip, FAILURE_SCOPE, config=config)


def _budget_ids(*parts: str, config: Config | None = None) -> tuple[str, ...]:
    prefix = (config or current_app.config).get("RATELIMIT_KEY_PREFIX") or ""
    return (prefix, *parts) if prefix else parts


def _spent(item: RateLimitItem, ids: tuple[str, ...]) -> int | None:
    limiter = limiter_of()
    if not limiter.enabled:
        return None
    strategy = limiter.limiter
    if strategy.test(item, *ids):
        return None
    reset_at, _ = strategy.get_window_stats(item, *ids)
    return seconds_until(reset_at)


def _spend(item: RateLimitItem, ids: tuple[str, ...]) -> bool:
    limiter = limiter_of()
    return limiter.limiter.hit(item, *ids) if limiter.enabled else True


def budget_spent(limit: str, *parts: str) -> int | None:
    """Seconds to wait when the budget `limit` (e.g. "10 per 15 minutes") named by
    `parts` is spent, else None. Raises the storage's error when it is unreachable."""
    return _spent(_item(limit), _budget_ids(*parts))


def spend_budget(limit: str, *parts: str) -> bool:
    """Spend one from the budget named by `parts`, atomically in the storage; False
    when it was already spent."""
    return _spend(_item(limit), _budget_ids(*parts))


def failures_exhausted(ip: str | None) -> int | None:
    """Seconds to wait when this IP has spent its failed-guess budget, else None.

    Raises the storage's error when it is unreachable (the caller answers 503).
    """
    retry = _spent(*_failure_args(ip or "unknown"))
    if retry is not None:
        _remember_block(ip or "unknown", retry)
    return retry


def spend_failure(ip: str | None) -> bool:
    """Spend one failed guess; False when the budget was already spent.

    An atomic acquire in the storage, so concurrent workers cannot overshoot. Raises
    the storage's error when it is unreachable (the caller answers 503).
    """
    return _spend(*_failure_args(ip or "unknown"))


def unshared_limits_problem(storage_uri: str | None, workers: int) -> str | None:
    """Why a server may not start: memory:// counters live in each worker process, so
    N workers would grant N times every limit (tier, failed guesses, login)."""
    if workers > 1 and (storage_uri or "memory://").startswith("memory://"):
        return (
            f"RATELIMIT_STORAGE_URI is memory:// with {workers} workers: each worker would "
            f"count on its own and grant up to {workers} times every rate limit. Use Redis "
            "(RATELIMIT_STORAGE_URI=redis://...) with more than one worker, or run one "
            "(WEB_CONCURRENCY=1)."
        )
    return None


def spend_ip_budget(ip: str | None, limit: str, scope: str) -> int | None:
    """Count one request of a client IP against `limit` (e.g. "10/minute") under
    `scope`, atomically in the limiter's storage; seconds to wait when it is spent, else
    None. For unauthenticated endpoints (report-leak). Raises the storage's error when
    it is unreachable (the API answers 503)."""
    limiter = limiter_of()
    if not limiter.enabled:
        return None
    item = _item(limit)
    prefix = current_app.config.get("RATELIMIT_KEY_PREFIX") or ""
    ids = (prefix, ip or "unknown", scope) if prefix else (ip or "unknown", scope)
    strategy = limiter.limiter
    if strategy.hit(item, *ids):
        return None
    reset_at, _ = strategy.get_window_stats(item, *ids)
    return seconds_until(reset_at)
