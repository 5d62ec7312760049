"""A per-process cache of key lookups for the validation hot path.

Why: validating the same key thousands of times a second must not cost a database
round trip each time. Revocation, expiry changes (rotation grace) and tier changes
must still reach every worker within a second:

- With Redis limits (moving window), every change committed through the app sets a
  new *key stamp* in Redis (`announce`), and every charge of a key reads the stamp in
  the same script, in the same round trip (app/ratelimit.py). A worker that sees a new
  stamp drops every entry and looks the key up again before answering. So a change
  reaches every worker on its next request, and a cached key can live `max_age`
  (default 30 s): that only bounds what no stamp announces, a change made with SQL
  outside the app. An announcement that fails (Redis unreachable from the process
  that made the change) is retried every half second in the background; a worker
  that finds Redis unreachable forgets the stamp it knew, so it looks every key up
  again once Redis answers.
- Otherwise (memory:// or another strategy) an entry lives `ttl` (default 0.5 s), so
  a revocation is seen by every worker within that time.

Unknown ids are cached too (as None, as long as known ones), so a flood of one made-up id
costs one query per entry life, and an unknown id costs what a known one does. Changes
committed through the ORM in this process drop the affected entries at commit, so the
worker that made a change sees it at once.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import Flask, current_app, has_app_context
from sqlalchemy import bindparam, event, exists, literal, select, union_all
from sqlalchemy.orm import Session

from app.models import ApiKey, User

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_allowlist(ranges: list[str] | None) -> tuple[Network, ...]:
    """Stored ranges (normalised by app/keys/policies.py) as network objects."""
    return tuple(ipaddress.ip_network(r) for r in ranges or ())


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """What validation needs of a key and its owner, detached from any session."""

    id: int
    public_id: str
    user_id: int
    name: str
    tier: str
    scopes: tuple[str, ...]
    expires_at: datetime
    revoked_at: datetime | None
    secret_hash: bytes
    # Per-key policies (app/keys/policies.py), parsed once here: the hot path only
    # tests membership. Empty: from anywhere.
    ip_networks: tuple[Network, ...] = ()
    meta: dict[str, Any] | None = None
    rate_limit: int | None = None  # an admin's own per-minute limit; None: the tier's
    test: bool = False  # a test key (never billed)
    owner_rate_limit: int | None = None  # the owner's own limit, capped by the tier's
    lineage: str = ""  # its rotation chain's first public id: the monthly quota's name


# Built once; SQLAlchemy caches its compiled form, so a miss costs one indexed query.
# It always returns one row of the same shape: the key's, or (for an unknown id) a
# stand-in whose values the driver and the column types decode just as they decode a
# key's. So an unknown id and a wrong secret take the same path and the same work
# (the contract: indistinguishable, also in timing), not "no row" vs "decode a row".
_STAND_IN_ID = 0  # real ids start at 1
_FOUND = (
    select(
        ApiKey.id,
        ApiKey.user_id,
        ApiKey.name,
        User.tier,
        ApiKey.scopes,
        ApiKey.expires_at,
        ApiKey.revoked_at,
        ApiKey.secret_hash,
        ApiKey.ip_allowlist,
        ApiKey.meta,
        ApiKey.rate_limit,
        ApiKey.test,
        ApiKey.owner_rate_limit,
        ApiKey.lineage,
    )
    .join(User, User.id == ApiKey.user_id)
    .where(ApiKey.public_id == bindparam("public_id"))
)
_STAND_IN = select(
    literal(_STAND_IN_ID, ApiKey.id.type),
    literal(_STAND_IN_ID, ApiKey.user_id.type),
    literal("stand-in", ApiKey.name.type),
    literal("basic", User.tier.type),
    literal(["keys:read"], ApiKey.scopes.type),
    literal(datetime(2000, 1, 1, tzinfo=UTC), ApiKey.expires_at.type),
    literal(None, ApiKey.revoked_at.type),
    literal(bytes(32), ApiKey.secret_hash.type),
    # As a key without policies (most keys) decodes: docs/security.md on what keys with
    # policies cost a cold lookup.
    literal(None, ApiKey.ip_allowlist.type),
    literal(None, ApiKey.meta.type),
    literal(0, ApiKey.rate_limit.type),
    literal(False, ApiKey.test.type),
    literal(None, ApiKey.owner_rate_limit.type),
    literal(None, ApiKey.lineage.type),
).where(~exists().where(ApiKey.public_id == bindparam("public_id")))
_QUERY = union_all(_FOUND, _STAND_IN)


def load_record(session: Session, public_id: str) -> KeyRecord | None:
    """One indexed query: the key joined to its owner's tier, or None for an unknown id.

    Run as Core on the session's connection (same transaction): the ORM execute path
    costs about as much again as the query itself for a plain row (docs/performance.md,
    "Key lookups: Core, cached").
    """
    row = session.connection().execute(_QUERY, {"public_id": public_id}).one()
    record = KeyRecord(
        id=row.id,
        public_id=public_id,
        user_id=row.user_id,
        name=row.name,
        tier=row.tier,
        scopes=tuple(row.scopes or ()),
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        secret_hash=bytes(row.secret_hash),
        ip_networks=parse_allowlist(row.ip_allowlist),
        meta=row.meta,
        rate_limit=row.rate_limit,
        test=bool(row.test),
        owner_rate_limit=row.owner_rate_limit,
        lineage=row.lineage or public_id,
    )
    return None if record.id == _STAND_IN_ID else record


class KeyCache:
    """public_id -> (loaded at, stamp then, KeyRecord | None); bounded; thread-safe."""

    RETRY_INTERVAL = 0.5  # seconds between attempts to announce a change

    def __init__(
        self,
        ttl: float = 0.5,
        max_age: float = 30.0,
        max_entries: int = 10_000,
        announce: Callable[[], bool] | None = None,
    ) -> None:
        if not 0 <= ttl < 1:
            raise ValueError("KEY_CACHE_TTL must be at least 0 and under 1 second")
        if max_age < ttl:
            raise ValueError("KEY_CACHE_MAX_AGE must be at least KEY_CACHE_TTL")
        self.ttl = ttl
        self.max_age = max_age
        self.max_entries = max_entries
        # Sets a new key stamp for every worker; False when Redis did not take it.
        self.announce = announce
        self._failed = 0  # announcements failed and not yet made good; > 0: a retry runs
        self._retry_until = 0.0
        self.stamp: object = None  # the last key stamp seen; None: no shared stamp
        self._entries: dict[str, tuple[float, object, KeyRecord | None]] = {}
        self._lock = threading.Lock()

    def get(self, session: Session, public_id: str) -> KeyRecord | None:
        now = time.monotonic()
        hit = self._entries.get(public_id)
        if hit is not None and hit[1] is self.stamp:
            # Unknown ids live as long as known ones: a new key announces a new stamp
            # like any other change, which voids them; a shorter life made an unknown
            # id cost a query a known one does not (a timing oracle, issue 22).
            stamped = self.stamp is not None
            if now - hit[0] < (self.max_age if stamped else self.ttl):
                return hit[2]
        stamp = self.stamp  # before the read: a change announced meanwhile voids it
        record = load_record(session, public_id)
        if self.ttl > 0:
            with self._lock:
                if len(self._entries) >= self.max_entries:
                    self._evict(now)
                self._entries[public_id] = (now, stamp, record)
        return record

    def observe(self, stamp: object, seen: object) -> bool:
        """Note the key stamp read with a charge. True when the caller must look its key
        up again (in a fresh transaction): keys changed somewhere since `seen`, the stamp
        this process knew when the caller read its key. A new stamp also drops every
        entry. Comparing with `seen`, not only with the last stamp noted, matters with
        threads: two requests read the cached key, a revocation is announced, both
        charges read the new stamp; the second to note it must look again too."""
        if stamp is None:
            if self.stamp is not None:  # no shared stamp any more: the short TTL rules
                self.stamp = None
                self.clear()
            return False
        if stamp != self.stamp:
            self.stamp = stamp
            self.clear()
        return stamp != seen

    def lose_stamp(self) -> None:
        """The stamp's storage did not answer: changes may be announced meanwhile (or
        fail to be), so trust nothing cached; the next stamp read is new, and every key
        is looked up again."""
        self.stamp = None
        self.clear()

    def announce_change(self) -> None:
        """Tell every worker that keys changed; on failure keep trying in the
        background for `max_age` (after that no worker holds an entry older than the
        change)."""
        if self.announce is None or self.announce():
            return
        with self._lock:
            self._failed += 1
            self._retry_until = time.monotonic() + self.max_age  # this change's bound
            if self._failed > 1:
                return  # the running retry covers this change too
        threading.Thread(target=self._retry, name="keyledger-key-stamp", daemon=True).start()

    def _retry(self) -> None:
        assert self.announce is not None
        while True:
            time.sleep(self.RETRY_INTERVAL)
            with self._lock:
                failed = self._failed
            ok = self.announce()
            with self._lock:
                # Done once a stamp was set after every failed announcement so far.
                if ok and self._failed == failed:
                    log.warning("key change announced to other workers after a retry")
                elif ok or time.monotonic() < self._retry_until:
                    continue
                else:
                    log.error(
                        "gave up announcing a key change: other workers saw it within %.0f s",
                        self.max_age,
                    )
                self._failed = 0
                return

    def forget(self, public_id: str) -> None:
        """Drop one entry: this process sees its own revocations at once."""
        self._entries.pop(public_id, None)

    def clear(self) -> None:
        self._entries.clear()

    def _evict(self, now: float) -> None:
        limit = self.max_age if self.stamp is not None else self.ttl
        live = {k: v for k, v in self._entries.items() if now - v[0] < limit}
        # Still full of live entries (a flood of distinct ids): start over.
        self._entries = live if len(live) < self.max_entries // 2 else {}


def _app_cache() -> KeyCache | None:
    if not has_app_context():
        return None
    return current_app.extensions.get("keyledger.key_cache")


def note_changed(session: Session, public_id: str) -> None:
    """A key changed by a Core UPDATE (the ORM hook below does not see it): drop it from
    this process's cache and announce it to the others when the session commits."""
    session.info.setdefault("keyledger.changed_keys", set()).add(public_id)


def _note_changes(session: Session, flush_context: object) -> None:
    for obj in (*session.dirty, *session.deleted):
        if isinstance(obj, ApiKey):
            session.info.setdefault("keyledger.changed_keys", set()).add(obj.public_id)
        elif isinstance(obj, User):
            session.info["keyledger.changed_users"] = True  # a tier: every key may follow


def _forget_changes(session: Session) -> None:
    keys = session.info.pop("keyledger.changed_keys", None)
    users = session.info.pop("keyledger.changed_users", None)
    cache = _app_cache() if keys or users else None
    if cache is None:
        return
    if users:
        cache.clear()
    else:
        for public_id in keys or ():
            cache.forget(public_id)
    cache.announce_change()


def _drop_notes(session: Session) -> None:
    session.info.pop("keyledger.changed_keys", None)
    session.info.pop("keyledger.changed_users", None)


_SESSION_HOOKS = (
    ("after_flush", _note_changes),
    ("after_commit", _forget_changes),
    ("after_rollback", _drop_notes),
)


def init_app(app: Flask) -> None:
    """The app's key cache, and the session hooks that keep it current.

    The hooks go on every Session (the recorder and the server sessions use plain
    ones) and look up the cache of the app in context, so one set serves every app
    of the process: registered with the first app, not at import.
    """
    from app.ratelimit import announce_key_change

    app.extensions["keyledger.key_cache"] = KeyCache(
        ttl=float(app.config["KEY_CACHE_TTL"]),
        max_age=float(app.config["KEY_CACHE_MAX_AGE"]),
        announce=functools.partial(announce_key_change, app),
    )
    for name, hook in _SESSION_HOOKS:
        if not event.contains(Session, name, hook):
            event.listen(Session, name, hook)
