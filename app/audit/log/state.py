"""The tree state row every sealer serialises on, the log's tables, settings and errors."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy import select, update
from sqlalchemy.engine import Connection, Engine

from app import dialects
from app.audit import core
from app.audit.anchor import Anchor
from app.audit.core import Checkpoint
from app.audit.signing import Signer
from app.models import AuditCheckpoint, AuditCosignature, AuditEvent, AuditNode, AuditState

log = logging.getLogger(__name__)


NODE_MIN_LEVEL = 8


CHUNK = 1 << NODE_MIN_LEVEL


events_t = AuditEvent.__table__


state_t = AuditState.__table__


checkpoint_t = AuditCheckpoint.__table__


cosig_t = AuditCosignature.__table__


node_t = AuditNode.__table__


class LogError(RuntimeError):
    """The log cannot answer (an event or checkpoint it needs is missing)."""


@dataclass(frozen=True)
class LogSettings:
    origin: str
    signer: Signer
    trusted: core.KeyRing
    anchor: Anchor
    checkpoint_interval: float = 300.0
    batch: int = 5000
    witnesses: list[tuple[str, core.Verifier]] = field(default_factory=list)


@dataclass(frozen=True)
class SealResult:
    sealed: int
    size: int
    checkpoint: Checkpoint | None
    refused: str | None = None


def lock_state(conn: Connection) -> tuple[int, bytes, str | None]:
    """Take the one lock every sealer serialises on; create the row if missing (tests
    truncate tables). Returns (size, frontier, halted)."""
    sqlite = dialects.name_of(conn) == "sqlite"
    if sqlite:
        # The write lock first: two sealers that each read before writing would
        # deadlock on SQLite's lock upgrade (PostgreSQL locks the row below).
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    conn.execute(
        dialects.insert(conn, state_t)
        .values(id=1, size=0, root=core.EMPTY_ROOT, frontier=b"")
        .on_conflict_do_nothing()
    )
    if not sqlite:
        conn.commit()
    row = conn.execute(
        select(state_t.c.size, state_t.c.frontier, state_t.c.halted)
        .where(state_t.c.id == 1)
        .with_for_update()
    ).one()
    return int(row.size), bytes(row.frontier), row.halted


def halt(engine: Engine, reason: str) -> None:
    log.critical("audit log HALTED, refusing to sign: %s. Run `flask audit recover`.", reason)
    with engine.begin() as conn:
        conn.execute(update(state_t).where(state_t.c.id == 1).values(halted=reason))


def halted(conn: Connection) -> str | None:
    return conn.execute(select(state_t.c.halted).where(state_t.c.id == 1)).scalar()
