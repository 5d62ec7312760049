from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models._types import UTCDateTime, utcnow


class UserSession(db.Model):
    """One logged-in browser. The cookie carries the signed token; only its SHA-256
    is stored, so a copy of the table cannot be replayed as cookies. Ending a session
    deletes its row."""

    __tablename__ = "user_session"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ip: Mapped[str | None] = mapped_column(String(45), nullable=True)
    user_agent: Mapped[str | None] = mapped_column(String(300), nullable=True)
    # The session's contents (CSRF token, flashes, ...) in Flask's tagged JSON.
    data: Mapped[str] = mapped_column(Text, default="{}")

    def __repr__(self) -> str:
        return f"<UserSession {self.id} user {self.user_id}>"
