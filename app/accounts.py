"""Accounts: registration, password checks (argon2id), tiers. No Flask request objects.

A failed login costs the same whether or not the email exists: an unknown email is
checked against a dummy hash made with the same parameters.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import email_validator
from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import sessions, text, times
from app.audit import trail
from app.config import TIERS
from app.models import AuditEvent, TierPeriod, User
from app.models._types import utcnow

MIN_PASSWORD = 12
MAX_PASSWORD = 1024


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
    return text.normalize_email(email)


def is_valid_email(email: str) -> bool:
    """A normalised address we can store and mail: RFC 5321/5322 syntax as the kept
    email-validator library reads it (no quoted local parts, no IP-literal domains, a
    real domain name: what `xss"><svg ...>@ex<b>ample.com` or `a@example.com'--` are
    not), and no invisible characters. Deliverability (DNS) is not asked: offline."""
    if len(email) > 254 or text.problem(email) is not None:
        return False
    try:
        email_validator.validate_email(
            email, check_deliverability=False, allow_quoted_local=False, allow_domain_literal=False
        )
    except email_validator.EmailNotValidError:
        return False
    return True


def check_password_rules(password: str) -> None:
    """NIST 800-63B: length only, no composition rules."""
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"Password must be at least {MIN_PASSWORD} characters.")
    if len(password) > MAX_PASSWORD:
        raise AccountError(f"Password must be at most {MAX_PASSWORD} characters.")


def loggable_email(email: str) -> str | None:
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
    # Hashed before the lookup, so an address already taken costs the same argon2
    # work as a new one (docs/decisions.md: what the answer says, and why).
    password_hash = passwords.hash(password)
    if find_user(session, email) is not None:
        raise AccountError("An account with this email already exists.")
    user = User(email=email, password_hash=password_hash, tier=tier, is_admin=is_admin)
    session.add(user)
    session.flush()
    session.add(TierPeriod(user_id=user.id, since=user.created_at, tier=tier))
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


def check_credentials(
    session: Session, passwords: Passwords, *, email: str, password: str, actor_ip: str | None
) -> User | None:
    """Check an email and password (upgrading the hash if parameters changed); a
    failure is audited here, a success is not a log-in yet: a second factor may stand
    between this and `record_login` (commits)."""
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
            details={"email": loggable_email(email)},
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
        raise AccountInactive(
            f"An administrator disabled this account on {times.display(user.disabled_at)} "
            "UTC: its API keys were revoked and its sessions ended. Ask an administrator "
            "to enable it."
        )
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash(password)
    session.commit()
    return user


def record_login(
    session: Session, user: User, *, actor_ip: str | None, details: dict[str, Any] | None = None
) -> None:
    """Audit a completed log-in (every factor passed); commits."""
    trail.record(
        session,
        "user.login",
        actor=f"user:{user.id}",
        actor_ip=actor_ip,
        target=f"user:{user.id}",
        details=details,
    )
    session.commit()


LOGIN_FAILURES = ("user.login_failed", "user.login_throttled")


@dataclass(frozen=True, slots=True)
class FailedLogins:
    """Failed or refused log-ins on an account between its last two log-ins."""

    count: int
    ips: list[str]


def _previous_login(session: Session, target: str) -> int:
    """The audit id of "your last log-in": the newest `user.login` is the one just made."""
    logins = session.scalars(
        select(AuditEvent.id)
        .where(AuditEvent.target == target, AuditEvent.action == "user.login")
        .order_by(AuditEvent.id.desc())
        .limit(2)
    ).all()
    return logins[1] if len(logins) > 1 else 0


def failed_since_last_login(session: Session, user: User) -> FailedLogins:
    """What the user is told after logging in: read from the audit trail. An attempt
    with the right password on a disabled account (outcome "denied") is not a failed
    guess: `disabled_since_last_login` tells that story instead."""
    target = f"user:{user.id}"
    rows = session.execute(
        select(AuditEvent.actor_ip, func.count())
        .where(
            AuditEvent.target == target,
            AuditEvent.action.in_(LOGIN_FAILURES),
            AuditEvent.outcome != "denied",
            AuditEvent.id > _previous_login(session, target),
        )
        .group_by(AuditEvent.actor_ip)
        .order_by(func.count().desc())
    ).all()
    return FailedLogins(sum(n for _, n in rows), [ip or "unknown" for ip, _ in rows])


@dataclass(frozen=True, slots=True)
class DisabledSpell:
    disabled_at: datetime
    enabled_at: datetime | None


def disabled_since_last_login(session: Session, user: User) -> DisabledSpell | None:
    """When an administrator disabled the account (and enabled it again) since the
    owner's last log-in: the keys revoked then stay revoked, which the owner must hear
    about before wondering why their services fail."""
    target = f"user:{user.id}"
    rows = session.execute(
        select(AuditEvent.action, AuditEvent.created_at)
        .where(
            AuditEvent.target == target,
            AuditEvent.action.in_(("user.disabled", "user.enabled")),
            AuditEvent.id > _previous_login(session, target),
        )
        .order_by(AuditEvent.id)
    ).all()
    disabled = next((at for action, at in rows if action == "user.disabled"), None)
    if disabled is None:
        return None
    enabled = next((at for action, at in reversed(rows) if action == "user.enabled"), None)
    return DisabledSpell(disabled, enabled)


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
        details={"email": loggable_email(email), "limit": limit, "retry_after": retry_after},
    )
    session.commit()


def set_tier(
    session: Session,
    user: User,
    tier: str,
    *,
    actor: str,
    actor_ip: str | None = None,
    at: datetime | None = None,
) -> bool:
    """Change a user's tier (and so every key's), from `at` (now; `flask demo seed`
    backdates it) for billing's proration. Returns False when unchanged."""
    if tier not in TIERS:
        raise AccountError(f"Tier must be one of {', '.join(TIERS)}.")
    if user.tier == tier:
        return False
    old, user.tier = user.tier, tier
    session.add(TierPeriod(user_id=user.id, since=at or utcnow(), tier=tier))
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


# --- the account page, admin control and the CLI: each change in one transaction ------


def _ended(n: int) -> dict[str, int]:
    return {"sessions_ended": n}


def _record_and_commit(
    session: Session,
    action: str,
    user: User,
    *,
    sensitivity: str,
    details: dict[str, Any],
    actor: str | None = None,
    actor_ip: str | None = None,
) -> None:
    """Audit a change to `user` (acting on their own account unless `actor` says who)
    in the change's transaction, and commit both."""
    trail.record(
        session,
        action,
        actor=actor or f"user:{user.id}",
        actor_ip=actor_ip,
        target=f"user:{user.id}",
        sensitivity=sensitivity,
        details=details,
    )
    session.commit()


def change_password(
    session: Session,
    passwords: Passwords,
    user: User,
    *,
    current: str,
    new: str,
    keep_session: int | None,
    actor_ip: str | None,
) -> int:
    """Change a password after checking the current one; every session but
    `keep_session` ends. Returns how many ended (commits)."""
    if not passwords.check(user.password_hash, current):
        raise AccountError("The current password is wrong. Nothing was changed.")
    check_password_rules(new)
    if new == current:
        raise AccountError("The new password is the same as the current one.")
    user.password_hash = passwords.hash(new)
    ended = sessions.end_all(session, user.id, keep=keep_session)
    _record_and_commit(
        session,
        "user.password_changed",
        user,
        sensitivity="high",
        details=_ended(ended),
        actor_ip=actor_ip,
    )
    return ended


def reset_password(
    session: Session, passwords: Passwords, user: User, new: str, *, actor: str
) -> int:
    """An operator sets a password (`flask users reset-password`); every session ends."""
    check_password_rules(new)
    user.password_hash = passwords.hash(new)
    ended = sessions.end_all(session, user.id)
    _record_and_commit(
        session, "user.password_reset", user, sensitivity="high", details=_ended(ended), actor=actor
    )
    return ended


def end_session(session: Session, user: User, session_id: int, *, actor_ip: str | None) -> bool:
    """End one of the user's own sessions (End on the account page); commits."""
    if not sessions.end(session, session_id, user_id=user.id):
        session.rollback()
        return False
    _record_and_commit(
        session,
        "user.session_ended",
        user,
        sensitivity="medium",
        details={"session": session_id},
        actor_ip=actor_ip,
    )
    return True


def end_other_sessions(
    session: Session, user: User, *, keep_session: int | None, actor_ip: str | None
) -> int:
    """ "Log out everywhere": every session but this one ends (commits)."""
    ended = sessions.end_all(session, user.id, keep=keep_session)
    _record_and_commit(
        session,
        "user.sessions_ended",
        user,
        sensitivity="high",
        details=_ended(ended),
        actor_ip=actor_ip,
    )
    return ended


def _active_admin_ids(session: Session) -> list[int]:
    """Active admins, locked (PostgreSQL) so two concurrent removals cannot both
    pass the last-admin check; SQLite serialises the writers anyway."""
    return list(
        session.scalars(
            select(User.id)
            .where(User.is_admin.is_(True), User.disabled_at.is_(None), User.closed_at.is_(None))
            .with_for_update()
        )
    )


def _keep_an_admin(session: Session, user: User, doing: str) -> None:
    if user.is_admin and user.is_active and _active_admin_ids(session) == [user.id]:
        raise AccountError(f"{user.email} is the last admin: {doing} would leave none.")


def _shut(
    session: Session,
    user: User,
    *,
    action: str,
    actor: str,
    actor_ip: str | None,
    reason: str,
    sensitivity: str,
) -> tuple[int, int]:
    """Revoke every live key and end every session; the caller sets the flag."""
    from app.keys import lifecycle

    keys = lifecycle.revoke_live_keys(session, user, actor=actor, actor_ip=actor_ip, reason=reason)
    ended = sessions.end_all(session, user.id)
    trail.record(
        session,
        action,
        actor=actor,
        actor_ip=actor_ip,
        target=f"user:{user.id}",
        sensitivity=sensitivity,
        details={"email": user.email, "keys_revoked": len(keys), **_ended(ended)},
    )
    return len(keys), ended


def close_account(
    session: Session, passwords: Passwords, user: User, *, password: str, actor_ip: str | None
) -> int:
    """The owner closes the account: keys revoked, sessions ended, login blocked, in
    one transaction. The row and the audit trail stay. Returns keys revoked."""
    if not passwords.check(user.password_hash, password):
        raise AccountError("The password is wrong. Nothing was changed.")
    _keep_an_admin(session, user, "closing this account")
    user.closed_at = utcnow()
    revoked, _ = _shut(
        session,
        user,
        action="user.closed",
        actor=f"user:{user.id}",
        actor_ip=actor_ip,
        reason="account closed by its owner",
        sensitivity="high",
    )
    session.commit()
    return revoked


def disable_user(session: Session, user: User, *, actor: str, actor_ip: str | None = None) -> int:
    """An admin disables an account: every live key revoked (one event each), every
    session ended, login blocked, `user.disabled` (critical); one transaction."""
    if user.disabled_at is not None:
        return 0
    if actor == f"user:{user.id}":
        raise AccountError("You cannot disable your own account.")
    _keep_an_admin(session, user, "disabling it")
    user.disabled_at = utcnow()
    revoked, _ = _shut(
        session,
        user,
        action="user.disabled",
        actor=actor,
        actor_ip=actor_ip,
        reason="account disabled by an administrator",
        sensitivity="critical",
    )
    session.commit()
    return revoked


def enable_user(session: Session, user: User, *, actor: str, actor_ip: str | None = None) -> bool:
    """Let a disabled account log in again (its revoked keys stay revoked)."""
    if user.closed_at is not None:
        raise AccountError("This account was closed by its owner and cannot be enabled.")
    if user.disabled_at is None:
        return False
    user.disabled_at = None
    _record_and_commit(
        session,
        "user.enabled",
        user,
        sensitivity="critical",
        details={"email": user.email},
        actor=actor,
        actor_ip=actor_ip,
    )
    return True


def set_admin(
    session: Session, user: User, admin: bool, *, actor: str, actor_ip: str | None = None
) -> bool:
    """Grant or remove admin (critical). The last active admin cannot be removed."""
    if user.is_admin == admin:
        return False
    if not admin:
        _keep_an_admin(session, user, "removing admin")
    elif not user.is_active:
        raise AccountError("Enable the account before making it an admin.")
    user.is_admin = admin
    trail.record(
        session,
        "user.admin_granted" if admin else "user.admin_removed",
        actor=actor,
        actor_ip=actor_ip,
        target=f"user:{user.id}",
        sensitivity="critical",
        details={"email": user.email},
    )
    session.commit()
    return True


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.id)))


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
