"""Retention (AU-11): dropping old payloads while every leaf hash and proof stays."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.engine import Engine

from app.audit.log.reader import latest_checkpoint
from app.audit.log.state import events_t

log = logging.getLogger(__name__)


def prune(engine: Engine, before: datetime, batch: int = 5000) -> int:
    """Drop the payload of sealed events older than `before` (AU-11), oldest first,
    stopping at the first event that is not older, so the pruned events are always a
    prefix of the log. Leaf hashes, seqs and checkpoints stay: every proof holds."""
    total = 0
    with engine.connect() as conn:
        last = latest_checkpoint(conn, cosigned=False)
        covered = last.tree_size if last else 0
        first_kept = conn.execute(
            select(func.min(events_t.c.seq)).where(
                events_t.c.seq.is_not(None), events_t.c.created_at >= before
            )
        ).scalar()
        limit = covered if first_kept is None else min(covered, int(first_kept))
        conn.rollback()
    lo = 0
    while lo < limit:
        hi = min(lo + batch, limit)
        with engine.begin() as conn:
            result = conn.execute(
                update(events_t)
                .where(events_t.c.seq >= lo, events_t.c.seq < hi, events_t.c.canonical.is_not(None))
                .values(canonical=None, actor="", actor_ip=None, target=None, details="{}")
            )
            total += result.rowcount or 0
        lo = hi
    return total
