"""Retention (AU-11): dropping old payloads while every leaf hash and proof stays."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import case, func, select, update
from sqlalchemy.engine import Engine

from app.audit import core
from app.audit.log.reader import latest_checkpoint
from app.audit.log.state import events_t

log = logging.getLogger(__name__)


class PruneError(ValueError):
    """A cut-off that must not be used (later than the newest checkpoint)."""


def prune_plan(engine: Engine, before: datetime) -> tuple[int, int]:
    """(events whose payload a prune before `before` drops, seq it stops at): the
    sealed, checkpointed prefix older than `before`. A cut-off later than the newest
    checkpoint's time is refused: it would reach today's events."""
    with engine.connect() as conn:
        last = latest_checkpoint(conn, cosigned=False)
        if last is not None and before > core.parse_time(last.time):
            conn.rollback()
            raise PruneError(
                f"{core.format_time(before)} is later than the newest checkpoint "
                f"({last.time}): prune only what a checkpoint already covers"
            )
        covered = last.tree_size if last else 0
        first_kept = conn.execute(
            select(func.min(events_t.c.seq)).where(
                events_t.c.seq.is_not(None), events_t.c.created_at >= before
            )
        ).scalar()
        limit = covered if first_kept is None else min(covered, int(first_kept))
        count = conn.execute(
            select(func.count()).where(events_t.c.seq < limit, events_t.c.canonical.is_not(None))
        ).scalar()
        conn.rollback()
    return int(count or 0), limit


def prune(engine: Engine, before: datetime, batch: int = 5000) -> int:
    """Drop the payload of sealed events older than `before` (AU-11), oldest first,
    stopping at the first event that is not older, so the pruned events are always a
    prefix of the log. Leaf hashes, seqs and checkpoints stay: every proof holds. A
    key event keeps its target (`key:<public id>`), so its receipts are still found."""
    total = 0
    _, limit = prune_plan(engine, before)
    lo = 0
    while lo < limit:
        hi = min(lo + batch, limit)
        with engine.begin() as conn:
            result = conn.execute(
                update(events_t)
                .where(events_t.c.seq >= lo, events_t.c.seq < hi, events_t.c.canonical.is_not(None))
                .values(
                    canonical=None,
                    actor="",
                    actor_ip=None,
                    target=case((events_t.c.target.like("key:%"), events_t.c.target), else_=None),
                    details="{}",
                )
            )
            total += result.rowcount or 0
        lo = hi
    return total
