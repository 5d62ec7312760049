"""Server-side login sessions: create, load (with idle and absolute expiry), touch, end.

A login creates one record with a fresh random token; the browser's cookie carries
only that token, signed (app/web.py). Ending a session deletes its record, so the
cookie that named it is worth nothing afterwards, replayed or not. No Flask request
objects here: callers pass the SQLAlchemy session and plain values.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, or_, select, update
from sqlalchemy.orm import Session

from app.models import User, UserSession
from app.models._types import utcnow

# "Last seen" is written at most this often per session: a page view costs a read,
# not a write. Idle expiry is therefore exact to within this interval.
TOUCH_INTERVAL = timedelta(minutes=1)
MAX_USER_AGENT = 300


@dataclass(frozen=True, slots=True)
class Lifetimes:
    idle: timedelta
    absolute: timedelta

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Lifetimes:
        idle = int(config.get("SESSION_IDLE_MINUTES", 60))
        absolute = int(config.get("SESSION_MAX_HOURS", 12))
        if idle < 1 or absolute < 1:
            raise ValueError("SESSION_IDLE_MINUTES and SESSION_MAX_HOURS must be at least 1")
        return cls(timedelta(minutes=idle), timedelta(hours=absolute))


@dataclass(frozen=True, slots=True)
class Live:
    """A session that is still valid, as the request sees it.

    `user` is the record's user as the same query read it (None if the row is gone),
    held here so the ORM session's identity map keeps it for the request: Flask-Login's
    user loader then gets it without a query of its own. Whether that user may be
    signed in (disabled, closed) is still the loader's decision."""

    id: int
    user_id: int
    data: str
    created_at: datetime
    last_seen_at: datetime
    user: User | None = None


def new_token() -> str:
    return secrets.token_urlsafe(32)  # 256 bits from the OS CSPRNG


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _expired_clause(lifetimes: Lifetimes, now: datetime) -> Any:
    return or_(
        UserSession.last_seen_at < now - lifetimes.idle,
        UserSession.created_at < now - lifetimes.absolute,
    )


def start(
    session: Session,
    user_id: int,
    *,
    data: str,
    ip: str | None,
    user_agent: str | None,
    lifetimes: Lifetimes,
    now: datetime | None = None,
) -> tuple[str, int]:
    """Record a new session for a login; return its token and id (commits).

    The user's expired sessions are swept here, so the table holds live ones only
    (plus those abandoned since the user's last login)."""
    now = now or utcnow()
    token = new_token()
    session.execute(
        delete(UserSession).where(UserSession.user_id == user_id, _expired_clause(lifetimes, now))
    )
    record = UserSession(
        token_hash=token_hash(token),
        user_id=user_id,
        created_at=now,
        last_seen_at=now,
        ip=ip,
        user_agent=(user_agent or "")[:MAX_USER_AGENT] or None,
        data=data,
    )
    session.add(record)
    session.commit()
    return token, record.id


# Every signed-in page request runs this lookup first, so it is built once, reads the
# five columns it needs rather than a whole record, and brings the user along (one query
# where the user loader would make a second).
_LOOKUP = (
    select(
        UserSession.id,
        UserSession.user_id,
        UserSession.data,
        UserSession.created_at,
        UserSession.last_seen_at,
        User,
    )
    .outerjoin(User, User.id == UserSession.user_id)
    .where(UserSession.token_hash == bindparam("token_hash", type_=UserSession.token_hash.type))
)


def load(
    session: Session, token: str, lifetimes: Lifetimes, now: datetime | None = None
) -> Live | None:
    """The live session this token names, or None (unknown, ended or expired).

    An expired record is deleted on sight (commits only then)."""
    now = now or utcnow()
    row = session.execute(_LOOKUP, {"token_hash": token_hash(token)}).first()
    if row is None:
        return None
    record_id, user_id, data, created_at, last_seen_at, user = row
    if now - last_seen_at > lifetimes.idle or now - created_at > lifetimes.absolute:
        session.execute(delete(UserSession).where(UserSession.id == record_id))
        session.commit()
        return None
    return Live(record_id, user_id, data, created_at, last_seen_at, user)


def needs_touch(live: Live, now: datetime | None = None) -> bool:
    return (now or utcnow()) - live.last_seen_at >= TOUCH_INTERVAL


def save(
    session: Session,
    session_id: int,
    *,
    data: str | None,
    touch: bool,
    ip: str | None,
    now: datetime | None = None,
) -> None:
    """Write changed contents and/or the last-seen time (commits). A session ended
    meanwhile (another device pressed End) stays ended: the update finds no row."""
    values: dict[str, Any] = {}
    if data is not None:
        values["data"] = data
    if touch:
        values["last_seen_at"] = now or utcnow()
        values["ip"] = ip
    if values:
        session.execute(update(UserSession).where(UserSession.id == session_id).values(**values))
        session.commit()


def end(session: Session, session_id: int, *, user_id: int | None = None) -> bool:
    """End one session (the caller commits). With `user_id`, only if it is theirs."""
    query = delete(UserSession).where(UserSession.id == session_id)
    if user_id is not None:
        query = query.where(UserSession.user_id == user_id)
    return bool(session.execute(query).rowcount)


def end_all(session: Session, user_id: int, *, keep: int | None = None) -> int:
    """End every session of a user but `keep` (the caller commits); returns how many."""
    query = delete(UserSession).where(UserSession.user_id == user_id)
    if keep is not None:
        query = query.where(UserSession.id != keep)
    return int(session.execute(query).rowcount or 0)


def active(
    session: Session, user_id: int, lifetimes: Lifetimes, now: datetime | None = None
) -> list[UserSession]:
    """A user's live sessions, most recently seen first."""
    now = now or utcnow()
    return list(
        session.scalars(
            select(UserSession)
            .where(
                UserSession.user_id == user_id,
                UserSession.last_seen_at >= now - lifetimes.idle,
                UserSession.created_at >= now - lifetimes.absolute,
            )
            .order_by(UserSession.last_seen_at.desc(), UserSession.id.desc())
        )
    )


def device(user_agent: str | None) -> str:
    """'Firefox on Linux' and the like, for the sessions list (ua-parser's rules)."""
    if not user_agent:
        return "Unknown device"
    from ua_parser import parse

    parsed = parse(user_agent)
    browser = parsed.user_agent.family if parsed.user_agent else None
    system = parsed.os.family if parsed.os else None
    if browser and system and browser != "Other" and system != "Other":
        return f"{browser} on {system}"
    if browser and browser != "Other":
        return browser
    if system and system != "Other":
        return system
    return user_agent[:60]
