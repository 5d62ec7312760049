"""Two-factor sign-in: authenticator apps (TOTP, RFC 6238), recovery codes, the
admins' requirement. No Flask request objects: callers pass a session and plain values.

The TOTP secret is HMAC(pepper, label || salt) and only the salt is stored, the way
webhook signing secrets are: a copy of the database cannot compute a code. Recovery
codes are HMACs under the pepper, like API key secrets.
"""

from __future__ import annotations

import base64
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pyotp
from pyotp.exceptions import OTPVerificationError
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from app.accounts import AccountError, Passwords
from app.audit import trail
from app.keys.hashing import hash_secret
from app.models import Passkey, RecoveryCode, SiteSetting, TotpSecret, User
from app.models._types import utcnow

_LABEL = b"keyledger totp secret\x00"
RECOVERY_CODES = 10
# One 30-second step either side: a phone clock a little off still works (RFC 6238 5.2).
DRIFT_STEPS = 1
_CODE_RE = re.compile(r"^[0-9]{6}\Z")
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i to misread
POLICIES = ("none", "admins", "everyone")


class CodeRefused(AccountError):
    """The code is wrong, already used or out of its window; nothing was changed."""


@dataclass(frozen=True)
class TotpSetup:
    secret: str  # base32, shown once as text beside the QR code
    uri: str  # otpauth://


def _secret(pepper: bytes, salt: bytes) -> str:
    raw = hmac.digest(pepper, _LABEL + salt, "sha256")[:20]  # 160 bits, RFC 4226's size
    return base64.b32encode(raw).decode("ascii")


def _totp(pepper: bytes, row: TotpSecret) -> pyotp.TOTP:
    return pyotp.TOTP(_secret(pepper, row.salt))


def _recovery_hash(pepper: bytes, code: str) -> bytes:
    return hash_secret(pepper, "recovery-code:" + code)


def _clean_recovery(code: str) -> str:
    return "".join(ch for ch in code.strip().lower() if ch not in " -")


def totp_row(session: Session, user: User) -> TotpSecret | None:
    return session.get(TotpSecret, user.id)


def has_totp(session: Session, user: User) -> bool:
    row = totp_row(session, user)
    return row is not None and row.confirmed_at is not None


def passkey_count(session: Session, user: User) -> int:
    return int(session.scalar(select(func.count()).where(Passkey.user_id == user.id)) or 0)


def has_second_factor(session: Session, user: User) -> bool:
    """TOTP confirmed or at least one passkey: the log-in asks for one of them."""
    return has_totp(session, user) or passkey_count(session, user) > 0


def _record(
    session: Session,
    action: str,
    user: User,
    *,
    actor_ip: str | None,
    outcome: str = "success",
    actor: str | None = None,
    sensitivity: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    trail.record(
        session,
        action,
        actor=actor or f"user:{user.id}",
        actor_ip=actor_ip,
        target=f"user:{user.id}",
        outcome=outcome,
        sensitivity=sensitivity,
        details=details,
    )


def begin_totp(session: Session, pepper: bytes, user: User, *, issuer: str) -> TotpSetup:
    """Start (or restart) setting up an authenticator app: a fresh secret, not yet in
    force until `confirm_totp` (commits)."""
    row = totp_row(session, user)
    if row is not None and row.confirmed_at is not None:
        raise AccountError("An authenticator app is already set up. Turn it off first.")
    if row is None:
        row = TotpSecret(user_id=user.id, salt=secrets.token_bytes(16))
        session.add(row)
    else:
        row.salt, row.created_at, row.last_step = secrets.token_bytes(16), utcnow(), None
    session.commit()
    return pending_setup(session, pepper, user, issuer=issuer)  # type: ignore[return-value]


def pending_setup(session: Session, pepper: bytes, user: User, *, issuer: str) -> TotpSetup | None:
    """The secret being set up (shown again on a reload), None when there is none."""
    row = totp_row(session, user)
    if row is None or row.confirmed_at is not None:
        return None
    totp = _totp(pepper, row)
    return TotpSetup(totp.secret, totp.provisioning_uri(name=user.email, issuer_name=issuer))


def _accept_totp(
    session: Session, pepper: bytes, row: TotpSecret, code: str, now: datetime | None
) -> bool:
    """A code of a step later than the last accepted one, within the drift window.
    The step is claimed with a conditional UPDATE, so two requests racing with one
    code cannot both pass."""
    if not _CODE_RE.match(code):
        return False
    try:
        step = _totp(pepper, row).verify_and_get_timecode(
            code, for_time=now or utcnow(), valid_window=DRIFT_STEPS
        )
    except OTPVerificationError:
        return False
    claimed = session.execute(
        update(TotpSecret)
        .where(TotpSecret.user_id == row.user_id)
        .where((TotpSecret.last_step.is_(None)) | (TotpSecret.last_step < step))
        .values(last_step=step)
        .execution_options(synchronize_session=False)
    ).rowcount
    return bool(claimed)


def new_recovery_codes(session: Session, pepper: bytes, user: User) -> list[str]:
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(10))  # ~49 bits
        codes.append(f"{raw[:5]}-{raw[5:]}")
        session.add(RecoveryCode(user_id=user.id, code_hash=_recovery_hash(pepper, raw)))
    return codes


def confirm_totp(
    session: Session,
    passwords: Passwords,
    pepper: bytes,
    user: User,
    *,
    password: str,
    code: str,
    actor_ip: str | None,
    now: datetime | None = None,
) -> list[str]:
    """Put the authenticator app in force once the password and a current code from
    it are right; returns the ten recovery codes to show once (commits)."""
    row = totp_row(session, user)
    if row is None or row.confirmed_at is not None:
        raise AccountError("Start the set-up again: there is no authenticator waiting.")
    if not passwords.check(user.password_hash, password):
        raise AccountError("The password is wrong. Nothing was changed.")
    if not _accept_totp(session, pepper, row, code.strip(), now):
        session.rollback()
        raise CodeRefused("That code is not right. Check the app's clock and try the next code.")
    session.refresh(row)
    row.confirmed_at = utcnow()
    codes = new_recovery_codes(session, pepper, user)
    _record(session, "user.2fa_enabled", user, actor_ip=actor_ip, details={"method": "totp"})
    session.commit()
    return codes


def regenerate_recovery_codes(
    session: Session,
    passwords: Passwords,
    pepper: bytes,
    user: User,
    *,
    password: str,
    actor_ip: str | None,
) -> list[str]:
    """Ten new codes; the old ones stop working (commits)."""
    if not has_second_factor(session, user):
        raise AccountError("Turn on two-factor sign-in first.")
    if not passwords.check(user.password_hash, password):
        raise AccountError("The password is wrong. Nothing was changed.")
    codes = new_recovery_codes(session, pepper, user)
    _record(
        session, "user.2fa_enabled", user, actor_ip=actor_ip, details={"method": "recovery_codes"}
    )
    session.commit()
    return codes


def verify_code(
    session: Session,
    pepper: bytes,
    user: User,
    code: str,
    *,
    actor_ip: str | None,
    now: datetime | None = None,
) -> str:
    """The log-in's second step: a current TOTP code or an unused recovery code.
    Returns which ("totp" or "recovery_code"); a refusal is audited (commits)."""
    code = (code or "").strip()[:64]
    row = totp_row(session, user)
    if (
        row is not None
        and row.confirmed_at is not None
        and _accept_totp(session, pepper, row, code, now)
    ):
        session.commit()
        return "totp"
    cleaned = _clean_recovery(code)
    if len(cleaned) == 10:
        used = session.execute(
            update(RecoveryCode)
            .where(
                RecoveryCode.user_id == user.id,
                RecoveryCode.code_hash == _recovery_hash(pepper, cleaned),
                RecoveryCode.used_at.is_(None),
            )
            .values(used_at=utcnow())
            .execution_options(synchronize_session=False)
        ).rowcount
        if used:
            left = session.scalar(
                select(func.count()).where(
                    RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None)
                )
            )
            _record(
                session,
                "user.recovery_code_used",
                user,
                actor_ip=actor_ip,
                details={"codes_left": int(left or 0)},
            )
            session.commit()
            return "recovery_code"
    session.rollback()
    _record(session, "user.2fa_failed", user, actor_ip=actor_ip, outcome="failure")
    session.commit()
    raise CodeRefused("That code is not right, or it was already used.")


def recovery_codes_left(session: Session, user: User) -> int:
    return int(
        session.scalar(
            select(func.count()).where(
                RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None)
            )
        )
        or 0
    )


def disable_totp(
    session: Session,
    passwords: Passwords,
    pepper: bytes,
    user: User,
    *,
    password: str,
    code: str,
    actor_ip: str | None,
) -> None:
    """Turn the authenticator app off: the password and a code (or recovery code)."""
    if not has_totp(session, user):
        raise AccountError("No authenticator app is set up.")
    if not passwords.check(user.password_hash, password):
        raise AccountError("The password is wrong. Nothing was changed.")
    verify_code(session, pepper, user, code, actor_ip=actor_ip)
    session.execute(delete(TotpSecret).where(TotpSecret.user_id == user.id))
    if not has_second_factor(session, user):
        session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    _record(session, "user.2fa_disabled", user, actor_ip=actor_ip, details={"method": "totp"})
    session.commit()


def reset_second_factor(
    session: Session, user: User, *, actor: str, actor_ip: str | None = None
) -> bool:
    """An admin removes every second factor of a locked-out user (critical; commits)."""
    removed = 0
    for model in (TotpSecret, RecoveryCode, Passkey):
        removed += int(session.execute(delete(model).where(model.user_id == user.id)).rowcount)
    if not removed:
        session.rollback()
        return False
    _record(session, "user.2fa_reset", user, actor=actor, actor_ip=actor_ip, sensitivity="critical")
    session.commit()
    return True


# --- the requirement ----------------------------------------------------------------


@dataclass(frozen=True)
class Requirement:
    """Whether this user must have a second factor, and from when it is enforced."""

    required: bool
    deadline: datetime | None = None

    def overdue(self, now: datetime | None = None) -> bool:
        return self.required and self.deadline is not None and (now or utcnow()) >= self.deadline


def policy(session: Session, config: Mapping[str, Any]) -> tuple[str, datetime | None]:
    """The admins' choice (admin page) or, until one was made, MFA_REQUIRED."""
    row = session.get(SiteSetting, "mfa_required")
    if row is not None and row.value in POLICIES:
        return row.value, row.updated_at
    value = str(config.get("MFA_REQUIRED", "none"))
    return (value if value in POLICIES else "none"), None


def set_policy(session: Session, value: str, *, actor: str, actor_ip: str | None = None) -> bool:
    """An admin sets who must use two-factor sign-in (critical; commits)."""
    if value not in POLICIES:
        raise AccountError(f"Choose one of {', '.join(POLICIES)}.")
    row = session.get(SiteSetting, "mfa_required")
    if row is not None and row.value == value:
        return False
    old = row.value if row is not None else None
    if row is None:
        row = SiteSetting(name="mfa_required", value=value)
        session.add(row)
    row.value, row.updated_at = value, utcnow()
    trail.record(
        session,
        "settings.2fa_policy_changed",
        actor=actor,
        actor_ip=actor_ip,
        target="settings:mfa_required",
        sensitivity="critical",
        details={"from": old, "to": value},
    )
    session.commit()
    return True


def requirement(session: Session, user: User, config: Mapping[str, Any]) -> Requirement:
    """Required by the policy, enforced after MFA_GRACE_DAYS from the later of the
    policy's start and the account's creation; None deadline when already met."""
    value, since = policy(session, config)
    if value == "none" or (value == "admins" and not user.is_admin):
        return Requirement(False)
    if has_second_factor(session, user):
        return Requirement(True, None)
    start = max(since or user.created_at, user.created_at)
    return Requirement(True, start + timedelta(days=int(config.get("MFA_GRACE_DAYS", 7))))
