from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models._types import UTCDateTime


class AuditEvent(db.Model):
    """One append-only audit record.

    `canonical` holds the exact bytes that were hashed; every other column is derived
    from them for browsing and filtering, and `flask audit verify` checks they agree.
    `seq` stays NULL until the sealer gives the event its place in the Merkle log.
    """

    __tablename__ = "audit_event"
    __table_args__ = (
        # The sealer's queue: only unsealed rows, in arrival order.
        Index(
            "ix_audit_event_pending",
            "id",
            sqlite_where=text("seq IS NULL"),
            postgresql_where=text("seq IS NULL"),
        ),
        # Inclusion proofs by leaf hash: only sealed rows, so recording an event (seq
        # NULL) adds no index entry; the sealer's UPDATE does.
        Index(
            "ix_audit_event_leaf_hash",
            "leaf_hash",
            sqlite_where=text("seq IS NOT NULL"),
            postgresql_where=text("seq IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    seq: Mapped[int | None] = mapped_column(BigInteger, unique=True, index=True, nullable=True)
    event_id: Mapped[str] = mapped_column(String(32), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    sensitivity: Mapped[str] = mapped_column(String(16), index=True)
    actor: Mapped[str] = mapped_column(String(320), index=True)
    actor_ip: Mapped[str | None] = mapped_column(String(45), nullable=True, index=True)
    target: Mapped[str | None] = mapped_column(String(320), nullable=True, index=True)
    outcome: Mapped[str] = mapped_column(String(16), index=True)
    details: Mapped[str] = mapped_column(Text)
    # NULL once pruned (flask audit prune): the leaf hash stays, so proofs still hold.
    canonical: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class AuditState(db.Model):
    """The single row the sealer locks: tree size, root and the compact right edge
    (one hash per set bit of `size`), so sealing never re-reads old leaves."""

    __tablename__ = "audit_state"

    id: Mapped[int] = mapped_column(primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    root: Mapped[bytes] = mapped_column(LargeBinary(32))
    frontier: Mapped[bytes] = mapped_column(LargeBinary)
    # Set when the sealer found the log behind or diverging from a checkpoint held
    # outside the database; it signs nothing until `flask audit recover` clears it.
    halted: Mapped[str | None] = mapped_column(Text, nullable=True)


class AuditCheckpoint(db.Model):
    """A signed checkpoint. `note` holds the exact signed bytes; the other columns
    are parsed from it for queries, and verify checks they agree."""

    __tablename__ = "audit_checkpoint"

    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    tree_size: Mapped[int] = mapped_column(BigInteger, index=True)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    key_id: Mapped[str] = mapped_column(String(16))
    note: Mapped[bytes] = mapped_column(LargeBinary)
    signature: Mapped[bytes] = mapped_column(LargeBinary(64))


class AuditCosignature(db.Model):
    """A witness's C2SP tlog-cosignature on one checkpoint, kept beside it."""

    __tablename__ = "audit_cosignature"

    checkpoint_idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    witness: Mapped[str] = mapped_column(String(255), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(8))
    timestamp: Mapped[int] = mapped_column(BigInteger)
    signature: Mapped[bytes] = mapped_column(LargeBinary(64))


class AuditNode(db.Model):
    """Cached perfect-subtree hashes (256 leaves and up) so an inclusion proof reads
    O(log n) rows. A cache: verify rebuilds the tree without it, and a proof built
    from a tampered node fails against the signed root."""

    __tablename__ = "audit_node"

    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class AuditVerification(db.Model):
    """One "Verify now" run from the admin pages, with progress, so any worker can
    show it. Not part of the log."""

    __tablename__ = "audit_verification"

    id: Mapped[int] = mapped_column(primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    actor: Mapped[str] = mapped_column(String(320))
    total: Mapped[int] = mapped_column(BigInteger, default=0)
    checked: Mapped[int] = mapped_column(BigInteger, default=0)
    ok: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    events: Mapped[int] = mapped_column(BigInteger, default=0)
    checkpoints: Mapped[int] = mapped_column(BigInteger, default=0)
    root: Mapped[str | None] = mapped_column(String(64), nullable=True)
    last_checkpoint_time: Mapped[str | None] = mapped_column(String(32), nullable=True)
    bad_seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    kind: Mapped[str | None] = mapped_column(String(32), nullable=True)
    problem: Mapped[str | None] = mapped_column(Text, nullable=True)
    summary: Mapped[str | None] = mapped_column(Text, nullable=True)
