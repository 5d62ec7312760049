from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models._types import UTCDateTime


class AuditEvent(db.Model):
    """One append-only audit record.

    `canonical` holds the exact bytes that were hashed; every other column is derived
    from them for browsing and filtering, and `flask audit verify` checks they agree.
    """

    __tablename__ = "audit_event"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, unique=True, index=True)
    event_id: Mapped[str] = mapped_column(String(32), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    sensitivity: Mapped[str] = mapped_column(String(16), index=True)
    actor: Mapped[str] = mapped_column(String(320), index=True)
    actor_ip: Mapped[str | None] = mapped_column(String(45), nullable=True, index=True)
    target: Mapped[str | None] = mapped_column(String(320), nullable=True, index=True)
    outcome: Mapped[str] = mapped_column(String(16), index=True)
    details: Mapped[str] = mapped_column(Text)
    canonical: Mapped[bytes] = mapped_column(LargeBinary)
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    chain_hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class AuditState(db.Model):
    """The single row every appender locks: size and head of the chain."""

    __tablename__ = "audit_state"

    id: Mapped[int] = mapped_column(primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    head: Mapped[bytes] = mapped_column(LargeBinary(32))
