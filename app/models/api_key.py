from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, LargeBinary, String, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models._types import UTCDateTime, utcnow


class ApiKey(db.Model):
    """One key. Its secret is never stored: only HMAC-SHA256(pepper, secret).

    The key has no tier column on purpose: its tier is its owner's current tier, so an
    upgrade lifts every key at once.
    """

    __tablename__ = "api_key"

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, index=True)
    prefix: Mapped[str] = mapped_column(String(16))
    secret_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_used_ip: Mapped[str | None] = mapped_column(String(45), nullable=True)
    rotated_from_id: Mapped[int | None] = mapped_column(ForeignKey("api_key.id"), nullable=True)
    # The public id of the first key of its rotation chain (None: this key is the first).
    # Its monthly quota is counted under that name, so rotating neither resets nor
    # multiplies it (app/ratelimit.py).
    lineage: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # The owner's free-text note about the key (shown on the key page only).
    note: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    # Set when an administrator, not the owner, revoked the key: the owner is told why.
    revoked_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"), nullable=True)
    revoked_reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    # Per-key policies (app/keys/policies.py): CIDR ranges the key works from (None: any),
    # the owner's JSON object returned by validation, an admin's own per-minute limit.
    ip_allowlist: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    meta: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    rate_limit: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # The owner's own per-minute limit, at or below the tier's (it never raises it); an
    # admin's rate_limit wins over it (app.ratelimit.per_minute).
    owner_rate_limit: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Found in public (app/keys/leaks.py): when, where, and when the owner was told.
    leaked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    leak_location: Mapped[str | None] = mapped_column(String(500), nullable=True)
    leak_notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # When the owner was mailed that this key expires soon (app/notices.py): once per key.
    expiry_notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # A key made for testing (its own prefix, KeyPolicy.test_prefix): it validates like
    # any other and says so in the answer, and its use is never billed.
    test: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    owner = relationship("User", back_populates="keys", foreign_keys=[user_id])

    @property
    def tier(self) -> str:
        return self.owner.tier

    def __repr__(self) -> str:
        return f"<ApiKey {self.public_id}>"
