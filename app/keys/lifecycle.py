"""Create, rotate, revoke, look up and validate keys; every change is audited in its
own transaction. Callers pass who acts and from where, never a request object."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit import trail
from app.keys import format as keyformat
from app.keys.hashing import DUMMY_HASH, hash_secret, secret_matches
from app.models import ApiKey, User
from app.models._types import utcnow

SCOPE_RE = re.compile(r"^[a-z][a-z0-9_.:-]{0,63}$")
MAX_SCOPES = 32
GRACE_PERIODS = {
    "now": timedelta(0),
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
}


class KeyRequestError(ValueError):
    """A request about keys that cannot be honoured; the message is safe to show."""


@dataclass(frozen=True)
class KeyPolicy:
    prefix: str
    pepper: bytes
    max_days: Mapping[str, int]
    expiring_days: int = 7

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> KeyPolicy:
        if not keyformat.PREFIX_RE.match(config["KEY_PREFIX"]):
            raise ValueError("KEY_PREFIX must be 2-16 lowercase letters or digits")
        return cls(
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


def status(key: ApiKey, policy: KeyPolicy, now: datetime | None = None) -> str:
    now = now or utcnow()
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at <= now:
        return "expired"
    if key.expires_at - now <= timedelta(days=policy.expiring_days):
        return "expiring"
    return "active"


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
) -> NewKey:
    public_id = keyformat.new_public_id()
    while session.scalar(select(ApiKey.id).where(ApiKey.public_id == public_id)) is not None:
        public_id = keyformat.new_public_id()
    secret = keyformat.new_secret()
    key = ApiKey(
        public_id=public_id,
        prefix=policy.prefix,
        secret_hash=hash_secret(policy.pepper, secret),
        owner=owner,
        name=name,
        scopes=scopes,
        created_at=utcnow(),
        expires_at=expires_at,
        rotated_from_id=rotated_from.id if rotated_from else None,
    )
    session.add(key)
    session.flush()
    return NewKey(key, keyformat.assemble(policy.prefix, public_id, secret))


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
) -> NewKey:
    """Make a key for `owner`, capped by the owner's tier, and audit it (commits)."""
    name = name.strip()
    if not name or len(name) > 100:
        raise KeyRequestError("name must be 1 to 100 characters")
    scopes = clean_scopes(scopes)
    cap = policy.max_lifetime(owner.tier)
    if not 1 <= lifetime_days <= cap:
        raise KeyRequestError(f"lifetime must be between 1 and {cap} days on the {owner.tier} tier")
    new = _mint(session, policy, owner, name, scopes, utcnow() + timedelta(days=lifetime_days))
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
        },
    )
    session.commit()
    return new


def revoke_key(session: Session, key: ApiKey, *, actor: User, actor_ip: str | None) -> bool:
    """Revoke now. Returns False (and changes nothing) when already revoked."""
    if key.revoked_at is not None:
        return False
    key.revoked_at = utcnow()
    trail.record(
        session,
        "key.revoked",
        actor=_actor(actor),
        actor_ip=actor_ip,
        target=f"key:{key.public_id}",
        details={"name": key.name, "owner": _actor(key.owner)},
    )
    session.commit()
    return True


def rotate_key(
    session: Session,
    policy: KeyPolicy,
    key: ApiKey,
    *,
    grace: str,
    actor: User,
    actor_ip: str | None,
) -> NewKey:
    """Issue a successor with the same name and scopes; the old key ends after `grace`."""
    if grace not in GRACE_PERIODS:
        raise KeyRequestError("choose a grace period: now, 1 hour, 24 hours or 7 days")
    now = utcnow()
    if status(key, policy, now) in ("revoked", "expired"):
        raise KeyRequestError("only a live key can be rotated")
    lifetime = key.expires_at - key.created_at
    cap = timedelta(days=policy.max_lifetime(key.owner.tier))
    new = _mint(
        session,
        policy,
        key.owner,
        key.name,
        list(key.scopes),
        now + min(lifetime, cap),
        rotated_from=key,
    )
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
    session.commit()
    return new


def find_own_key(
    session: Session, owner: User, public_id: str, *, actor_ip: str | None
) -> ApiKey | None:
    """The owner's key, or None. Reaching for someone else's key is audited as critical."""
    if not isinstance(public_id, str) or len(public_id) > 32:
        return None
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


@dataclass(frozen=True)
class Validation:
    valid: bool
    error: str | None = None
    key: ApiKey | None = None


def validate(
    session: Session, policy: KeyPolicy, raw: object, *, client_ip: str | None
) -> Validation:
    """Check a presented key; audit the outcome and note last use (commits)."""
    try:
        parsed = keyformat.parse(raw, policy.prefix)
    except keyformat.MalformedKey:
        return _failed(session, "malformed_key", None, client_ip)
    key = session.scalar(select(ApiKey).where(ApiKey.public_id == parsed.public_id))
    stored = bytes(key.secret_hash) if key is not None else DUMMY_HASH
    if not secret_matches(policy.pepper, parsed.secret, stored) or key is None:
        return _failed(session, "invalid_key", parsed.public_id, client_ip)
    state = status(key, policy)
    if state in ("revoked", "expired"):
        return _failed(session, state, parsed.public_id, client_ip)
    key.last_used_at = utcnow()
    key.last_used_ip = client_ip
    trail.record(
        session,
        "key.validated",
        actor=f"key:{key.public_id}",
        actor_ip=client_ip,
        target=f"key:{key.public_id}",
    )
    session.commit()
    return Validation(True, key=key)


def _failed(session: Session, error: str, public_id: str | None, ip: str | None) -> Validation:
    trail.record(
        session,
        "key.validation_failed",
        actor=f"key:{public_id}" if public_id else "anonymous",
        actor_ip=ip,
        target=f"key:{public_id}" if public_id else None,
        outcome="failure",
        details={"error": error},
    )
    session.commit()
    return Validation(False, error=error)
