"""Create, rotate, revoke, look up and validate keys; every change is audited in its
own transaction. Callers pass who acts and from where, never a request object."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, case, func, select, update
from sqlalchemy.orm import Session, object_session

from app import text
from app.audit import trail
from app.keys import format as keyformat
from app.keys.cache import KeyCache, KeyRecord, load_record
from app.keys.hashing import DUMMY_HASH, hash_secret, secret_matches
from app.models import ApiKey, User
from app.models._types import utcnow

SCOPE_RE = re.compile(r"^[a-z][a-z0-9_.:-]{0,63}\Z")
MAX_SCOPES = 32
MAX_NAME = 100
MAX_NOTE = 1000
MAX_REASON = 500
GRACE_PERIODS = {
    "now": timedelta(0),
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
}


class KeyRequestError(ValueError):
    """A request about keys that cannot be honoured; the message is safe to show."""


class AlreadyRotated(KeyRequestError):
    """The key already has a successor: a second one would leave two live keys with
    the same name and no link between them."""

    def __init__(self, successor: str) -> None:
        super().__init__(f"this key was already rotated; its successor is {successor}")
        self.successor = successor


def _safe(value: str, field: str, multiline: bool = False) -> str:
    why = text.problem(value, multiline=multiline)
    if why is not None:
        raise KeyRequestError(f"{field} {why}")
    return value


def clean_name(name: str) -> str:
    name = _safe(name, "the name").strip()
    if not name or len(name) > MAX_NAME:
        raise KeyRequestError(f"name must be 1 to {MAX_NAME} characters")
    return name


def clean_note(note: str | None) -> str | None:
    note = _safe(note or "", "the note", multiline=True).strip()
    if len(note) > MAX_NOTE:
        raise KeyRequestError(f"the note has at most {MAX_NOTE} characters")
    return note or None


@dataclass(frozen=True)
class KeyPolicy:
    prefix: str
    pepper: bytes
    max_days: Mapping[str, int]
    expiring_days: int = 7
    test_prefix: str = ""  # test keys' visible prefix (ApiKey.test)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> KeyPolicy:
        if not keyformat.PREFIX_RE.match(config["KEY_PREFIX"]):
            raise ValueError("KEY_PREFIX must be 2-16 lowercase letters or digits")
        test_prefix = config.get("TEST_KEY_PREFIX") or f"{config['KEY_PREFIX']}test"
        if not keyformat.PREFIX_RE.match(test_prefix) or test_prefix == config["KEY_PREFIX"]:
            raise ValueError(
                "TEST_KEY_PREFIX must be 2-16 lowercase letters or digits, other than "
                "KEY_PREFIX (unset: KEY_PREFIX followed by 'test')"
            )
        return cls(
            test_prefix=test_prefix,
            prefix=config["KEY_PREFIX"],
            pepper=str(config["KEY_PEPPER"]).encode(),
            max_days=dict(config["KEY_MAX_DAYS"]),
            expiring_days=int(config.get("KEY_EXPIRING_DAYS", 7)),
        )

    def max_lifetime(self, tier: str) -> int:
        return self.max_days[tier]


@dataclass(frozen=True)
class NewKey:
    """A freshly made key with its plaintext: show it once, then drop it."""

    key: ApiKey
    plaintext: str


def clean_scopes(scopes: Iterable[str]) -> list[str]:
    """Deduplicate and check scopes; known and custom scopes share one grammar."""
    result: list[str] = []
    for scope in scopes:
        scope = scope.strip()
        if not scope:
            continue
        if not SCOPE_RE.match(scope):
            raise KeyRequestError(
                f"“{scope[:70]}” is not a valid scope: use lowercase letters, digits "
                "and _ . : - (at most 64 characters, starting with a letter)"
            )
        if scope not in result:
            result.append(scope)
    if len(result) > MAX_SCOPES:
        raise KeyRequestError(f"at most {MAX_SCOPES} scopes per key")
    return result


# A key is "expiring" in the last quarter of its lifetime (at least its last day), and
# at most the last KEY_EXPIRING_DAYS: a fixed window would call a new 7-day key expiring
# (and send key.expiring) the moment it is made.
EXPIRING_SHARE = 0.25


def expiring_window(created_at: datetime, expires_at: datetime, max_days: int) -> timedelta:
    """How long before `expires_at` a key made at `created_at` is "expiring"."""
    share = max((expires_at - created_at) * EXPIRING_SHARE, timedelta(days=1))
    return min(timedelta(days=max_days), share)


def phase(
    revoked_at: datetime | None,
    created_at: datetime,
    expires_at: datetime,
    now: datetime,
    max_days: int,
) -> str:
    """The one rule of a key's status: revoked, expired, expiring (inside its warning
    window) or active. status(), is_expiring() and status_counts() all ask it."""
    if revoked_at is not None:
        return "revoked"
    if expires_at <= now:
        return "expired"
    if expires_at - now <= expiring_window(created_at, expires_at, max_days):
        return "expiring"
    return "active"


def is_expiring(key: ApiKey, now: datetime, max_days: int) -> bool:
    """Live (not revoked, not expired) and inside its warning window."""
    return phase(key.revoked_at, key.created_at, key.expires_at, now, max_days) == "expiring"


def status(key: ApiKey, policy: KeyPolicy, now: datetime | None = None) -> str:
    return phase(
        key.revoked_at, key.created_at, key.expires_at, now or utcnow(), policy.expiring_days
    )


def is_live(now: datetime | None = None) -> Any:
    """SQL: the key is active or expiring (not revoked, not expired), as status() says."""
    return ApiKey.revoked_at.is_(None) & (ApiKey.expires_at > (now or utcnow()))


# The table's plain columns, for the keys page's statements built once below: a statement
# of plain columns runs as Core, without the ORM's per-execution set-up and row loading,
# which those statements (plain values in, plain rows out) never needed.
KEY_COLUMNS = ApiKey.__table__.c

# status_counts' statement, built once: its shape never changes, and building it (and
# its cache key) on every keys page showed in the page's profile (docs/performance.md).
_BUCKET = case(
    (KEY_COLUMNS.revoked_at.is_not(None), "revoked"),
    (KEY_COLUMNS.expires_at <= bindparam("now", type_=ApiKey.expires_at.type), "expired"),
    (KEY_COLUMNS.expires_at > bindparam("widest", type_=ApiKey.expires_at.type), "active"),
    else_="near",
)
_COUNTS = (
    select(_BUCKET, func.count())
    .where(KEY_COLUMNS.user_id == bindparam("owner", type_=ApiKey.user_id.type))
    .group_by(_BUCKET)
)


def status_counts(
    session: Session, owner_id: int, policy: KeyPolicy, now: datetime | None = None
) -> dict[str, int]:
    """How many of the owner's keys are in each status(), counted by the database (a
    paged list still shows the whole account's figures).

    SQL settles only what phase() would settle the same way without the lifetime:
    revoked, expired, and live beyond the widest window (KEY_EXPIRING_DAYS), which is
    active. The live keys inside it are few and handed to phase() itself, so the counts
    cannot drift from the badges."""
    now = now or utcnow()
    widest = now + timedelta(days=policy.expiring_days)
    rows = session.execute(_COUNTS, {"now": now, "widest": widest, "owner": owner_id})
    counts = {str(name): int(n) for name, n in rows}
    if counts.pop("near", 0):
        near = session.execute(
            select(ApiKey.revoked_at, ApiKey.created_at, ApiKey.expires_at).where(
                ApiKey.user_id == owner_id, is_live(now), ApiKey.expires_at <= widest
            )
        )
        for revoked, created, expires in near:
            name = phase(revoked, created, expires, now, policy.expiring_days)
            counts[name] = counts.get(name, 0) + 1
    return {name: n for name, n in counts.items() if n}


def _actor(user: User) -> str:
    return f"user:{user.id}"


def _mint(
    session: Session,
    policy: KeyPolicy,
    owner: User,
    name: str,
    scopes: list[str],
    expires_at: datetime,
    rotated_from: ApiKey | None = None,
    test: bool = False,
) -> NewKey:
    public_id = keyformat.new_public_id()
    while session.scalar(select(ApiKey.id).where(ApiKey.public_id == public_id)) is not None:
        public_id = keyformat.new_public_id()
    secret = keyformat.new_secret()
    prefix = policy.test_prefix if test else policy.prefix
    key = ApiKey(
        public_id=public_id,
        prefix=prefix,
        test=test,
        secret_hash=hash_secret(policy.pepper, secret),
        owner=owner,
        name=name,
        scopes=scopes,
        created_at=utcnow(),
        expires_at=expires_at,
        rotated_from_id=rotated_from.id if rotated_from else None,
        lineage=(rotated_from.lineage or rotated_from.public_id) if rotated_from else None,
    )
    session.add(key)
    session.flush()
    return NewKey(key, keyformat.assemble(prefix, public_id, secret))


def _commit_new_key(session: Session, key: ApiKey) -> None:
    """Commit a new key without expiring what the session holds: the page (or answer)
    that shows its secret, the only showing, then renders from memory, with no query
    that a database stalling right after the commit could turn into an error page
    hiding a live key's secret (issue 22)."""
    from app.errors import UNAVAILABLE
    from app.keys import unshown

    own = object_session(key) or session  # the Session itself, not a scoped proxy
    keep = own.expire_on_commit
    own.expire_on_commit = False
    public_id = key.public_id
    try:
        own.commit()
    except UNAVAILABLE:
        # Unanswered: it may have committed, and its secret will not be shown.
        unshown.remember(public_id)
        raise
    finally:
        own.expire_on_commit = keep


def check_lifetime(policy: KeyPolicy, tier: str, lifetime_days: int) -> None:
    """A new key lives 1 day to the tier's longest lifetime (KeyRequestError if not)."""
    cap = policy.max_lifetime(tier)
    if not 1 <= lifetime_days <= cap:
        raise KeyRequestError(f"lifetime must be between 1 and {cap} days on the {tier} tier")


def create_key(
    session: Session,
    policy: KeyPolicy,
    owner: User,
    *,
    name: str,
    scopes: Iterable[str],
    lifetime_days: int,
    actor: User | None = None,
    actor_ip: str | None = None,
    test: bool = False,
    not_after: datetime | None = None,
) -> NewKey:
    """Make a key for `owner`, capped by the owner's tier, and audit it (commits).
    `test`: a test key (its own prefix; validates, never billed). `not_after`: the
    latest expiry (a managing key's own, app/keys/delegation.py)."""
    name = clean_name(name)
    scopes = clean_scopes(scopes)
    check_lifetime(policy, owner.tier, lifetime_days)
    expires = utcnow() + timedelta(days=lifetime_days)
    if not_after is not None:
        expires = min(expires, not_after)
    new = _mint(session, policy, owner, name, scopes, expires, test=test)
    trail.record(
        session,
        "key.created",
        actor=_actor(actor or owner),
        actor_ip=actor_ip,
        target=f"key:{new.key.public_id}",
        details={
            "name": name,
            "scopes": scopes,
            "lifetime_days": lifetime_days,
            "owner": _actor(owner),
            **({"test": True} if test else {}),
        },
    )
    _commit_new_key(session, new.key)
    return new


def revoke_key(
    session: Session,
    key: ApiKey,
    *,
    actor: User,
    actor_ip: str | None,
    reason: str | None = None,
) -> bool:
    """Revoke now. Returns False (and changes nothing) when already revoked.

    Revoked by anyone but the owner (an administrator), the key remembers who and the
    reason, which the owner is shown; the event names the administrator as actor. The
    admin page requires a reason; a reason given must be non-empty text.
    """
    by_admin = actor.id != key.user_id
    if reason is not None:
        reason = _safe(reason, "the reason").strip()
        if not reason:
            raise KeyRequestError("give the reason the owner will be shown")
        if len(reason) > MAX_REASON:
            raise KeyRequestError(f"the reason has at most {MAX_REASON} characters")
    if key.revoked_at is not None:
        return False
    extra: dict[str, Any] = {}
    if by_admin:
        key.revoked_by_id, key.revoked_reason = actor.id, reason
        extra["by_admin"] = True
    if reason is not None:
        extra["reason"] = reason
    _mark_revoked(session, key, utcnow(), actor=_actor(actor), actor_ip=actor_ip, **extra)
    session.commit()
    return True


def revoke_unshown(session: Session, key: ApiKey, reason: str) -> None:
    """Revoke a key whose secret was never shown (app/keys/unshown.py): by the system,
    in the caller's transaction."""
    _mark_revoked(session, key, utcnow(), actor="system", actor_ip=None, reason=reason)


def _mark_revoked(
    session: Session, key: ApiKey, now: datetime, *, actor: str, actor_ip: str | None, **extra: Any
) -> None:
    """Set the revocation and add its `key.revoked` event to the caller's transaction."""
    key.revoked_at = now
    trail.record(
        session,
        "key.revoked",
        actor=actor,
        actor_ip=actor_ip,
        target=f"key:{key.public_id}",
        sensitivity="high",
        details={"name": key.name, "owner": _actor(key.owner), **extra},
    )


def update_key(
    session: Session,
    key: ApiKey,
    *,
    name: str,
    note: str | None,
    actor: User,
    actor_ip: str | None,
) -> bool:
    """Rename a key and/or change its note (audited). False when nothing changed."""
    name, note = clean_name(name), clean_note(note)
    changes: dict[str, Any] = {}
    if name != key.name:
        changes["name"] = {"from": key.name, "to": name}
        key.name = name
    if note != key.note:
        # The note's text stays out of the trail: only that it changed, and its length.
        changes["note"] = {"length": len(note or "")}
        key.note = note
    if not changes:
        return False
    trail.record(
        session,
        "key.updated",
        actor=_actor(actor),
        actor_ip=actor_ip,
        target=f"key:{key.public_id}",
        details={**changes, "owner": _actor(key.owner)},
    )
    session.commit()
    return True


def successor(session: Session, key: ApiKey) -> ApiKey | None:
    """The key issued when `key` was rotated, if it was."""
    return session.scalar(
        select(ApiKey).where(ApiKey.rotated_from_id == key.id).order_by(ApiKey.id).limit(1)
    )


# Built once, the ids one expanding parameter: a list page's 50 ids were otherwise made
# into 50 bound parameters, and the statement and its cache key built, on each page.
_SUCCESSORS = (
    select(KEY_COLUMNS.rotated_from_id)
    .where(KEY_COLUMNS.rotated_from_id.in_(bindparam("ids", expanding=True)))
    .distinct()
)


def superseded_ids(session: Session, key_ids: Iterable[int]) -> set[int]:
    """Which of these keys have a successor (one query for a list page)."""
    ids = list(key_ids)
    if not ids:
        return set()
    return {i for i in session.scalars(_SUCCESSORS, {"ids": ids}) if i is not None}


def rotate_key(
    session: Session,
    policy: KeyPolicy,
    key: ApiKey,
    *,
    grace: str,
    actor: User,
    actor_ip: str | None,
    not_after: datetime | None = None,
) -> NewKey:
    """Issue a successor with the same name and scopes; the old key ends after `grace`.
    `not_after`: the successor's latest expiry (a managing key's own)."""
    if grace not in GRACE_PERIODS:
        raise KeyRequestError("choose a grace period: now, 1 hour, 24 hours or 7 days")
    # A no-op write first takes the row lock (PostgreSQL) or the write lock (SQLite),
    # so of two rotations at once the second looks for a successor after the first
    # committed one.
    session.execute(
        update(ApiKey).where(ApiKey.id == key.id).values(rotated_from_id=ApiKey.rotated_from_id)
    )
    now = utcnow()
    if status(key, policy, now) in ("revoked", "expired"):
        raise KeyRequestError("only a live key can be rotated")
    later = successor(session, key)
    if later is not None:
        raise AlreadyRotated(later.public_id)
    lifetime = key.expires_at - key.created_at
    cap = timedelta(days=policy.max_lifetime(key.owner.tier))
    expires = now + min(lifetime, cap)
    if not_after is not None:
        expires = min(expires, not_after)
    new = _mint(
        session,
        policy,
        key.owner,
        key.name,
        list(key.scopes),
        expires,
        rotated_from=key,
        test=key.test,  # a test key's successor is a test key
    )
    # The successor keeps the key's policies (app/keys/policies.py).
    new.key.ip_allowlist, new.key.meta = key.ip_allowlist, key.meta
    new.key.rate_limit, new.key.owner_rate_limit = key.rate_limit, key.owner_rate_limit
    key.expires_at = min(key.expires_at, now + GRACE_PERIODS[grace])
    trail.record(
        session,
        "key.rotated",
        actor=_actor(actor),
        actor_ip=actor_ip,
        target=f"key:{key.public_id}",
        details={
            "successor": f"key:{new.key.public_id}",
            "grace": grace,
            "old_expires_at": key.expires_at.isoformat(),
            "owner": _actor(key.owner),
        },
    )
    _commit_new_key(session, new.key)
    return new


def find_own_key(
    session: Session, owner: User, public_id: str, *, actor_ip: str | None
) -> ApiKey | None:
    """The owner's key, or None. Reaching for someone else's key is audited as critical."""
    if not keyformat.is_public_id(public_id):
        return None  # no key has such an id (and PostgreSQL refuses NUL in a query)
    key = session.scalar(select(ApiKey).where(ApiKey.public_id == public_id))
    if key is None:
        return None
    if key.user_id != owner.id:
        trail.record(
            session,
            "access.unauthorized",
            actor=_actor(owner),
            actor_ip=actor_ip,
            target=f"key:{public_id}",
            outcome="denied",
            details={"reason": "key belongs to another user"},
        )
        session.commit()
        return None
    return key


@dataclass(frozen=True, slots=True)
class Validation:
    """The outcome of checking a presented key.

    `key` is set whenever the secret matched (the key is identified), live or not, so
    the caller can rate-limit and record usage against it; `public_id` is set whenever
    the key was well-formed, for the audit trail.
    """

    valid: bool
    error: str | None = None
    key: KeyRecord | None = None
    public_id: str | None = None


def validate(
    session: Session,
    policy: KeyPolicy,
    raw: object,
    *,
    cache: KeyCache | None = None,
    now: datetime | None = None,
) -> Validation:
    """Check a presented key. Writes nothing: usage, last use and the audit event of a
    validation go through the batched recorder, so the hot path never waits on a write.

    Parsing comes first, so a malformed key costs no query. An unknown id is checked
    against a dummy hash, so it costs the same as a wrong secret and looks the same.
    """
    try:
        parsed = keyformat.parse(raw, policy.prefix, policy.test_prefix)
    except keyformat.MalformedKey:
        return Validation(False, "malformed_key")
    if cache is not None:
        record = cache.get(session, parsed.public_id)
    else:
        record = load_record(session, parsed.public_id)
    stored = record.secret_hash if record is not None else DUMMY_HASH
    # The prefix must be the key's own: the checksum does not bind it to the secret, so
    # a live key written with the test prefix (or the reverse) is no key.
    test = parsed.prefix != policy.prefix
    if (
        not secret_matches(policy.pepper, parsed.secret, stored)
        or record is None
        or record.test is not test
    ):
        return Validation(False, "invalid_key", public_id=parsed.public_id)
    if record.revoked_at is not None:
        return Validation(False, "revoked", record, parsed.public_id)
    if record.expires_at <= (now or utcnow()):
        return Validation(False, "expired", record, parsed.public_id)
    return Validation(True, None, record, parsed.public_id)


def revoke_live_keys(
    session: Session, owner: User, *, actor: str, actor_ip: str | None, reason: str
) -> list[ApiKey]:
    """Revoke every key of `owner` not revoked yet, one `key.revoked` event each, in
    the caller's transaction (the caller commits: an account's keys go together)."""
    now = utcnow()
    keys = session.scalars(
        select(ApiKey).where(ApiKey.user_id == owner.id, ApiKey.revoked_at.is_(None))
    ).all()
    for key in keys:
        _mark_revoked(session, key, now, actor=actor, actor_ip=actor_ip, reason=reason)
    return list(keys)
