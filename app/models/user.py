from __future__ import annotations

from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import Boolean, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models._types import UTCDateTime, utcnow


class User(UserMixin, db.Model):
    __tablename__ = "user"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True, index=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    tier: Mapped[str] = mapped_column(String(16), default="basic")
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Set by an admin (`disable_user`) or by the owner closing the account: either
    # blocks login. The row stays, so the audit trail's `user:N` keeps its meaning.
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Owner notices turned off on /account, space-separated (app/notices.py names them).
    notices_off: Mapped[str] = mapped_column(String(200), default="", server_default="")

    keys = relationship(
        "ApiKey", back_populates="owner", lazy="dynamic", foreign_keys="ApiKey.user_id"
    )

    @property
    def is_active(self) -> bool:  # Flask-Login: an inactive user cannot log in
        return self.disabled_at is None and self.closed_at is None

    def __repr__(self) -> str:
        return f"<User {self.id} {self.tier}>"
