"""Password reset by mail: single-use links that expire. No Flask request objects.

The link carries a 256-bit token; only its HMAC under the pepper is stored (a copy
of the table cannot be turned into links). A link is dead once used, once a newer one
is sent, or after RESET_MINUTES. Asking answers the same for any address; only a
known, active account gets a link.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app import accounts, sessions
from app.audit import trail
from app.keys.hashing import hash_secret
from app.models import PasswordReset, User
from app.models._types import utcnow

RESET_MINUTES = 30
MAX_TOKEN = 64  # token_urlsafe(32) is 43 characters; longer cannot be ours


class ResetRefused(accounts.AccountError):
    """The link is unknown, used, superseded or expired; nothing was changed."""


def _hash(pepper: bytes, token: str) -> bytes:
    return hash_secret(pepper, "password-reset:" + token)


def request_reset(
    session: Session,
    pepper: bytes,
    email: str,
    *,
    actor_ip: str | None,
    now: datetime | None = None,
) -> tuple[User, str] | None:
    """A new link for a known, active account (older ones die); None otherwise. Both
    are audited alike (`user.password_reset_requested`); commits."""
    now = now or utcnow()
    user = accounts.find_user(session, email) if len(email) <= 254 else None
    if user is None or not user.is_active:
        trail.record(
            session,
            "user.password_reset_requested",
            actor="anonymous",
            actor_ip=actor_ip,
            target=f"user:{user.id}" if user else None,
            outcome="denied",
            details={"email": accounts.loggable_email(email), "sent": False},
        )
        session.commit()
        return None
    session.execute(
        update(PasswordReset)
        .where(PasswordReset.user_id == user.id, PasswordReset.used_at.is_(None))
        .values(used_at=now)
    )
    token = secrets.token_urlsafe(32)
    session.add(
        PasswordReset(
            user_id=user.id,
            token_hash=_hash(pepper, token),
            created_at=now,
            expires_at=now + timedelta(minutes=RESET_MINUTES),
        )
    )
    trail.record(
        session,
        "user.password_reset_requested",
        actor="anonymous",
        actor_ip=actor_ip,
        target=f"user:{user.id}",
        details={"email": user.email, "sent": True},
    )
    session.commit()
    return user, token


def _live(session: Session, pepper: bytes, token: str, now: datetime) -> PasswordReset | None:
    if not token or len(token) > MAX_TOKEN or not token.isascii():
        return None
    row = session.scalar(
        select(PasswordReset).where(PasswordReset.token_hash == _hash(pepper, token))
    )
    if row is None or row.used_at is not None or row.expires_at <= now:
        return None
    return row


def link_user(
    session: Session, pepper: bytes, token: str, now: datetime | None = None
) -> User | None:
    """Whose live link this is (the form is shown only for one); changes nothing."""
    row = _live(session, pepper, token, now or utcnow())
    user = session.get(User, row.user_id) if row is not None else None
    return user if user is not None and user.is_active else None


def reset(
    session: Session,
    passwords: accounts.Passwords,
    pepper: bytes,
    token: str,
    new_password: str,
    *,
    actor_ip: str | None,
    now: datetime | None = None,
) -> User:
    """Set the new password through a live link: the link dies, every session ends,
    `user.password_reset` (high); commits."""
    now = now or utcnow()
    row = _live(session, pepper, token, now)
    user = session.get(User, row.user_id) if row is not None else None
    if row is None or user is None or not user.is_active:
        raise ResetRefused("This link is no longer valid. Ask for a new one.")
    accounts.check_password_rules(new_password)
    claimed = session.execute(
        update(PasswordReset)
        .where(PasswordReset.id == row.id, PasswordReset.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not claimed:
        session.rollback()
        raise ResetRefused("This link is no longer valid. Ask for a new one.")
    user.password_hash = passwords.hash(new_password)
    ended = sessions.end_all(session, user.id)
    trail.record(
        session,
        "user.password_reset",
        actor=f"user:{user.id}",
        actor_ip=actor_ip,
        target=f"user:{user.id}",
        sensitivity="high",
        details={"via": "mail", "sessions_ended": ended},
    )
    session.commit()
    return user
