"""Accounts: registration, password checks (argon2id), tiers. No Flask request objects.

A failed login costs the same whether or not the email exists: an unknown email is
checked against a dummy hash made with the same parameters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import text
from app.audit import trail
from app.config import TIERS
from app.models import User

MIN_PASSWORD = 12
MAX_PASSWORD = 1024
# No whitespace or control characters anywhere (PostgreSQL refuses NUL in text).
EMAIL_RE = re.compile(
    r"^[^@\s\x00-\x1f\x7f]{1,64}@[^@\s.\x00-\x1f\x7f]+(\.[^@\s.\x00-\x1f\x7f]+)+$"
)


class AccountError(ValueError):
    """A request about accounts that cannot be honoured; the message is safe to show."""


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
    return text.normalize_email(email)


def is_valid_email(email: str) -> bool:
    """A normalised address we can store: the shape, and no invisible characters."""
    return len(email) <= 254 and bool(EMAIL_RE.match(email)) and text.problem(email) is None


def check_password_rules(password: str) -> None:
    """NIST 800-63B: length only, no composition rules."""
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"Password must be at least {MIN_PASSWORD} characters.")
    if len(password) > MAX_PASSWORD:
        raise AccountError(f"Password must be at most {MAX_PASSWORD} characters.")


def _loggable_email(email: str) -> str | None:
    email = normalize_email(email)
    return email if is_valid_email(email) else None


def find_user(session: Session, email: str) -> User | None:
    email = normalize_email(email)
    if not is_valid_email(email):
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
    if not is_valid_email(email):
        raise AccountError("Enter a valid email address.")
    check_password_rules(password)
    if tier not in TIERS:
        raise AccountError(f"Tier must be one of {', '.join(TIERS)}.")
    if find_user(session, email) is not None:
        raise AccountError("An account with this email already exists.")
    user = User(email=email, password_hash=passwords.hash(password), tier=tier, is_admin=is_admin)
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
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash(password)
    trail.record(
        session, "user.login", actor=f"user:{user.id}", actor_ip=actor_ip, target=f"user:{user.id}"
    )
    session.commit()
    return user


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


def actor_emails(session: Session, actors: Iterable[str | None]) -> dict[str, str]:
    """The email of each `user:N` among audit actors/targets, looked up when shown: the
    trail stores only the id (its bytes never change), the address is today's."""
    ids = set()
    for actor in actors:
        if actor and actor.startswith("user:") and actor[5:].isdigit() and len(actor) < 16:
            ids.add(int(actor[5:]))
    ids = {i for i in ids if i < 2**31}
    if not ids:
        return {}
    rows = session.execute(select(User.id, User.email).where(User.id.in_(ids)))
    return {f"user:{uid}": email for uid, email in rows}


def user_ids_matching(session: Session, email_part: str, limit: int = 500) -> list[int]:
    """Users whose address contains `email_part` (the admin searches)."""
    needle = normalize_email(email_part)
    if not needle or text.problem(needle) is not None:
        return []
    return list(
        session.scalars(
            select(User.id).where(User.email.contains(needle, autoescape=True)).limit(limit)
        )
    )
