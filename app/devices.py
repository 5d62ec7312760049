"""Known devices: a browser that has logged in to an account keeps a signed, random
device id in a long-lived cookie; the account keeps only its SHA-256. A log-in from a
browser without one the account knows is a new device (its owner is told by mail).
No Flask request objects: the caller reads and sets the cookie.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from enum import Enum

from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import KnownDevice
from app.models._types import utcnow

COOKIE = "kl_device"
COOKIE_DAYS = 365
MAX_LABEL = 100


class Seen(Enum):
    FIRST = "first"  # the account's first device: nothing to tell
    KNOWN = "known"
    NEW = "new"


def _signer(secret_key: str) -> URLSafeSerializer:
    return URLSafeSerializer(secret_key, salt="keyledger device")


def read(secret_key: str, raw: str | None) -> str | None:
    """The device id a cookie carries, or None (absent, forged, malformed)."""
    if not raw or len(raw) > 200:
        return None
    try:
        value = _signer(secret_key).loads(raw)
    except BadSignature:
        return None
    return value if isinstance(value, str) and 20 <= len(value) <= 64 else None


def new_cookie(secret_key: str) -> tuple[str, str]:
    """A fresh device id and the signed cookie value carrying it."""
    device_id = secrets.token_urlsafe(32)
    return device_id, _signer(secret_key).dumps(device_id)


def _hash(device_id: str) -> bytes:
    return hashlib.sha256(device_id.encode()).digest()


def budget_id(device_id: str) -> str:
    """The name of this device's own log-in budget (hashed: no device ids in Redis)."""
    return _hash(device_id).hex()[:32]


def seen(
    session: Session, user_id: int, device_id: str, label: str, now: datetime | None = None
) -> Seen:
    """Record a log-in from this device (commits); say whether the account knew it."""
    now = now or utcnow()
    row = session.scalar(
        select(KnownDevice).where(
            KnownDevice.user_id == user_id, KnownDevice.device_hash == _hash(device_id)
        )
    )
    if row is not None:
        row.last_seen_at = now
        session.commit()
        return Seen.KNOWN
    first = not session.scalar(select(func.count()).where(KnownDevice.user_id == user_id))
    session.add(
        KnownDevice(
            user_id=user_id,
            device_hash=_hash(device_id),
            label=label[:MAX_LABEL],
            first_seen_at=now,
            last_seen_at=now,
        )
    )
    session.commit()
    return Seen.FIRST if first else Seen.NEW


def is_known(session: Session, user_id: int, device_id: str | None) -> bool:
    """Whether this browser has logged in to the account before."""
    if device_id is None:
        return False
    return bool(
        session.scalar(
            select(func.count()).where(
                KnownDevice.user_id == user_id, KnownDevice.device_hash == _hash(device_id)
            )
        )
    )
