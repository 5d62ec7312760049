"""Passkeys (WebAuthn) as a second factor, through py_webauthn: registration and
sign-in ceremonies. No Flask request objects: the caller passes the relying party
(id, origin), the challenge it kept in the session and the browser's JSON answer.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Passkey, User


def listed(session: Session, user: User) -> list[Passkey]:
    return list(
        session.scalars(select(Passkey).where(Passkey.user_id == user.id).order_by(Passkey.id))
    )
