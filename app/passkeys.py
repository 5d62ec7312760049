"""Passkeys (WebAuthn) through py_webauthn: registration, and sign-in as the second
step after a password or on their own (a discoverable passkey with user
verification is two factors by itself: the device, and the PIN or biometric).

No Flask request objects: the caller passes the relying party (id, origin), the
challenge it kept in the session and the browser's JSON answer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import bytes_to_base64url, parse_authentication_credential_json
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from app import twofactor
from app.accounts import AccountError, Passwords
from app.audit import trail
from app.models import Passkey, RecoveryCode, User
from app.models._types import utcnow

MAX_NAME = 64
MAX_CREDENTIAL_JSON = 16 * 1024


class PasskeyRefused(AccountError):
    """The browser's answer did not verify; nothing was changed."""


@dataclass(frozen=True)
class RelyingParty:
    id: str  # the site's host name, e.g. keyledger.example
    origin: str  # https://keyledger.example (http://localhost:PORT in development)
    name: str = "Keyledger"


def listed(session: Session, user: User) -> list[Passkey]:
    return list(
        session.scalars(select(Passkey).where(Passkey.user_id == user.id).order_by(Passkey.id))
    )


def user_handle(user: User) -> bytes:
    """WebAuthn's user.id: opaque, stable, no personal data (the account number)."""
    return f"keyledger-user:{user.id}".encode()


def _user_from_handle(session: Session, handle: bytes | None) -> User | None:
    text = (handle or b"").decode("ascii", "replace")
    if not text.startswith("keyledger-user:") or not text[15:].isdigit() or len(text) > 30:
        return None
    return session.get(User, int(text[15:]))


def _credential(raw: str) -> dict[str, Any]:
    if not isinstance(raw, str) or len(raw) > MAX_CREDENTIAL_JSON:
        raise PasskeyRefused("The passkey's answer is too large or malformed.")
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise PasskeyRefused("The passkey's answer is malformed.") from exc
    if not isinstance(value, dict):
        raise PasskeyRefused("The passkey's answer is malformed.")
    return value


def registration_options(session: Session, rp: RelyingParty, user: User) -> tuple[str, bytes]:
    """The options for navigator.credentials.create (JSON) and the challenge to keep."""
    options = generate_registration_options(
        rp_id=rp.id,
        rp_name=rp.name,
        user_id=user_handle(user),
        user_name=user.email,
        user_display_name=user.email,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.PREFERRED,
        ),
        exclude_credentials=[
            PublicKeyCredentialDescriptor(id=p.credential_id) for p in listed(session, user)
        ],
    )
    return options_to_json(options), options.challenge


def register(
    session: Session,
    rp: RelyingParty,
    pepper: bytes,
    user: User,
    *,
    credential: str,
    challenge: bytes,
    name: str,
    actor_ip: str | None,
) -> tuple[Passkey, list[str] | None]:
    """Verify and store a new passkey (`user.passkey_added`); the account's first
    second factor also gets its ten recovery codes, returned to show once (commits)."""
    name = "".join(ch for ch in (name or "").strip() if ch.isprintable())[:MAX_NAME] or "Passkey"
    try:
        verified = verify_registration_response(
            credential=_credential(credential),
            expected_challenge=challenge,
            expected_rp_id=rp.id,
            expected_origin=rp.origin,
        )
    except (WebAuthnException, KeyError, TypeError, ValueError) as exc:
        raise PasskeyRefused(f"The passkey could not be added: {str(exc)[:120]}") from exc
    exists = session.scalar(select(Passkey).where(Passkey.credential_id == verified.credential_id))
    if exists is not None:
        raise PasskeyRefused("That passkey is already registered.")
    first = not twofactor.has_second_factor(session, user)
    passkey = Passkey(
        user_id=user.id,
        credential_id=verified.credential_id,
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        name=name,
    )
    session.add(passkey)
    codes = None
    has_codes = session.scalar(select(RecoveryCode.id).where(RecoveryCode.user_id == user.id))
    if first or has_codes is None:
        codes = twofactor.new_recovery_codes(session, pepper, user)
    trail.record(
        session,
        "user.passkey_added",
        actor=f"user:{user.id}",
        actor_ip=actor_ip,
        target=f"user:{user.id}",
        details={"name": name, "credential": bytes_to_base64url(verified.credential_id)[:32]},
    )
    session.commit()
    return passkey, codes


def authentication_options(
    session: Session, rp: RelyingParty, user: User | None
) -> tuple[str, bytes]:
    """Options for navigator.credentials.get: the user's passkeys after a password,
    or any discoverable one (with user verification) when signing in by passkey alone."""
    options = generate_authentication_options(
        rp_id=rp.id,
        allow_credentials=(
            [PublicKeyCredentialDescriptor(id=p.credential_id) for p in listed(session, user)]
            if user is not None
            else None
        ),
        user_verification=(
            UserVerificationRequirement.PREFERRED
            if user is not None
            else UserVerificationRequirement.REQUIRED
        ),
    )
    return options_to_json(options), options.challenge


def authenticate(
    session: Session,
    rp: RelyingParty,
    *,
    credential: str,
    challenge: bytes,
    user: User | None,
    actor_ip: str | None,
) -> User:
    """Verify an assertion. With `user` (the password was right) the passkey must be
    theirs; without, the passkey names the user and must have verified them (PIN or
    biometric). A refusal of a known account is audited `user.2fa_failed` (commits)."""
    body = _credential(credential)
    try:
        parsed = parse_authentication_credential_json(body)
    except (WebAuthnException, KeyError, TypeError, ValueError) as exc:
        raise PasskeyRefused("The passkey's answer is malformed.") from exc
    passkey = session.scalar(select(Passkey).where(Passkey.credential_id == parsed.raw_id))
    owner = session.get(User, passkey.user_id) if passkey is not None else None
    if user is None and owner is not None:
        handle_user = _user_from_handle(session, parsed.response.user_handle)
        if handle_user is None or handle_user.id != owner.id:
            owner = None
    if passkey is None or owner is None or (user is not None and owner.id != user.id):
        _refused(session, user, actor_ip, "unknown passkey")
        raise PasskeyRefused("That passkey is not registered for this account.")
    try:
        verified = verify_authentication_response(
            credential=parsed,
            expected_challenge=challenge,
            expected_rp_id=rp.id,
            expected_origin=rp.origin,
            credential_public_key=passkey.public_key,
            credential_current_sign_count=passkey.sign_count,
            require_user_verification=user is None,
        )
    except (WebAuthnException, KeyError, TypeError, ValueError) as exc:
        _refused(session, owner, actor_ip, str(exc)[:120])
        raise PasskeyRefused("The passkey's answer did not verify. Try again.") from exc
    passkey.sign_count = verified.new_sign_count
    passkey.last_used_at = utcnow()
    session.commit()
    if not owner.is_active:
        raise PasskeyRefused("This account is disabled or closed.")
    return owner


def _refused(session: Session, user: User | None, actor_ip: str | None, why: str) -> None:
    session.rollback()
    if user is None:
        return
    trail.record(
        session,
        "user.2fa_failed",
        actor=f"user:{user.id}",
        actor_ip=actor_ip,
        target=f"user:{user.id}",
        outcome="failure",
        details={"method": "passkey", "reason": why},
    )
    session.commit()


def remove(
    session: Session,
    passwords: Passwords,
    user: User,
    passkey_id: int,
    *,
    password: str,
    actor_ip: str | None,
) -> str:
    """Remove one of the user's passkeys after checking the password (commits)."""
    if not passwords.check(user.password_hash, password):
        raise AccountError("The password is wrong. Nothing was changed.")
    passkey = session.get(Passkey, passkey_id) if 0 < passkey_id < 2**31 else None
    if passkey is None or passkey.user_id != user.id:
        raise AccountError("That passkey is not yours or is already gone.")
    name = passkey.name
    session.execute(delete(Passkey).where(Passkey.id == passkey.id))
    if not twofactor.has_second_factor(session, user):
        session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    trail.record(
        session,
        "user.passkey_removed",
        actor=f"user:{user.id}",
        actor_ip=actor_ip,
        target=f"user:{user.id}",
        details={"name": name},
    )
    session.commit()
    return name
