"""Accounts: registration, password checks (argon2id), tiers. No Flask request objects.

A failed login costs the same whether or not the email exists: an unknown email is
checked against a dummy hash made with the same parameters.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.audit import trail
from app.config import TIERS
from app.models import AuditEvent, User

MIN_PASSWORD = 12
MAX_PASSWORD = 1024
# No whitespace or control characters anywhere (PostgreSQL refuses NUL in text).
EMAIL_RE = re.compile(
    r"^[^@\s\x00-\x1f\x7f]{1,64}@[^@\s.\x00-\x1f\x7f]+(\.[^@\s.\x00-\x1f\x7f]+)+$"
)


class AccountError(ValueError):
    """A request about accounts that cannot be honoured; the message is safe to show."""


class AccountInactive(AccountError):
    """The password was right but the account is disabled or closed."""


class Passwords:
    """argon2id hashing with parameters from config; tests use cheap ones."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.hasher = PasswordHasher(
            time_cost=int(config["ARGON2_TIME_COST"]),
            memory_cost=int(config["ARGON2_MEMORY_COST"]),
            parallelism=int(config["ARGON2_PARALLELISM"]),
            type=Type.ID,
        )
        self._dummy = self.hasher.hash("keyledger dummy password for timing")

    def hash(self, password: str) -> str:
        return self.hasher.hash(password)

    def check(self, stored: str | None, password: str) -> bool:
        try:
            return self.hasher.verify(stored or self._dummy, password) and stored is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        return self.hasher.check_needs_rehash(stored)


def normalize_email(email: str) -> str:
    return email.strip().lower()


def check_password_rules(password: str) -> None:
    """NIST 800-63B: length only, no composition rules."""
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"Password must be at least {MIN_PASSWORD} characters.")
    if len(password) > MAX_PASSWORD:
        raise AccountError(f"Password must be at most {MAX_PASSWORD} characters.")


def _loggable_email(email: str) -> str | None:
    email = normalize_email(email)
    return email if len(email) <= 254 and EMAIL_RE.match(email) else None


def find_user(session: Session, email: str) -> User | None:
    email = normalize_email(email)
    if len(email) > 254 or not EMAIL_RE.match(email):
        return None  # cannot be stored, so cannot exist; and NUL would upset PostgreSQL
    return session.scalar(select(User).where(User.email == email))


def create_user(
    session: Session,
    passwords: Passwords,
    *,
    email: str,
    password: str,
    tier: str = "basic",
    is_admin: bool = False,
    actor: str | None = None,
    actor_ip: str | None = None,
) -> User:
    """Create an account and audit it (commits). `actor` None means self-registration."""
    email = normalize_email(email)
    if len(email) > 254 or not EMAIL_RE.match(email):
        raise AccountError("Enter a valid email address.")
    check_password_rules(password)
    if tier not in TIERS:
        raise AccountError(f"Tier must be one of {', '.join(TIERS)}.")
    # Hashed before the lookup, so an address already taken costs the same argon2
    # work as a new one (docs/decisions.md: what the answer says, and why).
    password_hash = passwords.hash(password)
    if find_user(session, email) is not None:
        raise AccountError("An account with this email already exists.")
    user = User(email=email, password_hash=password_hash, tier=tier, is_admin=is_admin)
    session.add(user)
    session.flush()
    trail.record(
        session,
        "user.registered" if actor is None else "user.created",
        actor=actor or f"user:{user.id}",
        actor_ip=actor_ip,
        target=f"user:{user.id}",
        details={"email": email, "tier": tier, "admin": is_admin},
    )
    session.commit()
    return user


def authenticate(
    session: Session, passwords: Passwords, *, email: str, password: str, actor_ip: str | None
) -> User | None:
    """Check credentials, upgrade the hash if parameters changed, audit either way."""
    user = find_user(session, email) if len(email) <= 254 else None
    ok = passwords.check(user.password_hash if user else None, password)
    if not ok or user is None:
        trail.record(
            session,
            "user.login_failed",
            actor=f"user:{user.id}" if user else "anonymous",
            actor_ip=actor_ip,
            target=f"user:{user.id}" if user else None,
            outcome="failure",
            # Only a well-formed address is kept: a password typed into the email
            # field must not reach the trail.
            details={"email": _loggable_email(email)},
        )
        session.commit()
        return None
    if not user.is_active:
        # The password was right, so saying why is safe; the attempt is still recorded.
        state = "closed" if user.closed_at is not None else "disabled"
        trail.record(
            session,
            "user.login_failed",
            actor=f"user:{user.id}",
            actor_ip=actor_ip,
            target=f"user:{user.id}",
            outcome="denied",
            details={"email": user.email, "reason": f"account {state}"},
        )
        session.commit()
        if state == "closed":
            raise AccountInactive("This account was closed by its owner.")
        raise AccountInactive("This account is disabled. Ask an administrator to enable it.")
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash(password)
    trail.record(
        session, "user.login", actor=f"user:{user.id}", actor_ip=actor_ip, target=f"user:{user.id}"
    )
    session.commit()
    return user


LOGIN_FAILURES = ("user.login_failed", "user.login_throttled")


@dataclass(frozen=True, slots=True)
class FailedLogins:
    """Failed or refused log-ins on an account between its last two log-ins."""

    count: int
    ips: list[str]


def failed_since_last_login(session: Session, user: User) -> FailedLogins:
    """What the user is told after logging in: read from the audit trail (the newest
    `user.login` is the one just made; the one before it is "your last log-in")."""
    target = f"user:{user.id}"
    logins = session.scalars(
        select(AuditEvent.id)
        .where(AuditEvent.target == target, AuditEvent.action == "user.login")
        .order_by(AuditEvent.id.desc())
        .limit(2)
    ).all()
    since = logins[1] if len(logins) > 1 else 0
    rows = session.execute(
        select(AuditEvent.actor_ip, func.count())
        .where(
            AuditEvent.target == target,
            AuditEvent.action.in_(LOGIN_FAILURES),
            AuditEvent.id > since,
        )
        .group_by(AuditEvent.actor_ip)
        .order_by(func.count().desc())
    ).all()
    return FailedLogins(sum(n for _, n in rows), [ip or "unknown" for ip, _ in rows])


def throttle_id(email: str) -> str:
    """The per-account login budget's name: known and unknown addresses alike, so the
    throttle says nothing about which accounts exist (hashed: no emails in Redis)."""
    return hashlib.sha256(normalize_email(email).encode()).hexdigest()[:32]


def record_throttled(
    session: Session, *, email: str, actor_ip: str | None, limit: str, retry_after: int
) -> None:
    """Audit one refused log-in (commits); the password was not checked."""
    user = find_user(session, email) if len(email) <= 254 else None
    trail.record(
        session,
        "user.login_throttled",
        actor="anonymous",
        actor_ip=actor_ip,
        target=f"user:{user.id}" if user else None,
        outcome="denied",
        sensitivity="high",
        details={"email": _loggable_email(email), "limit": limit, "retry_after": retry_after},
    )
    session.commit()


def set_tier(
    session: Session, user: User, tier: str, *, actor: str, actor_ip: str | None = None
) -> bool:
    """Change a user's tier (and so every key's). Returns False when unchanged."""
    if tier not in TIERS:
        raise AccountError(f"Tier must be one of {', '.join(TIERS)}.")
    if user.tier == tier:
        return False
    old, user.tier = user.tier, tier
    trail.record(
        session,
        "user.tier_changed",
        actor=actor,
        actor_ip=actor_ip,
        target=f"user:{user.id}",
        details={"from": old, "to": tier},
    )
    session.commit()
    return True
