"""Retention: raw events go after USAGE_RETENTION_DAYS; hour roll-ups stay for billing.

Deletes run in chunks, each its own transaction, so pruning a large backlog neither
holds one long lock over the table the flushes write to nor builds one huge undo log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from app.models import UsageLatencyBin, UsageRecord, UsageRollup

CHUNK = 10_000


@dataclass(frozen=True)
class PruneResult:
    events: int
    minute_rollups: int
    events_cutoff: datetime
    minute_cutoff: datetime | None


def _delete(session: Session, model: type, where: list, *, chunked: bool, dry_run: bool) -> int:
    """Delete matching rows (in CHUNK-sized transactions when `chunked`); return how many."""
    if dry_run:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)
    total = 0
    while True:
        if chunked:
            chosen = select(model.id).where(*where).limit(CHUNK)
            n = session.execute(delete(model).where(model.id.in_(chosen))).rowcount or 0
        else:
            n = session.execute(delete(model).where(*where)).rowcount or 0
        session.commit()
        total += n
        if not chunked or n < CHUNK:
            return total


def prune(
    session: Session,
    *,
    retention_days: int,
    minute_retention_days: int | None,
    now: datetime | None = None,
    dry_run: bool = False,
) -> PruneResult:
    """Delete raw events older than the retention, and minute roll-ups older than theirs.

    Hour roll-ups are never pruned: they are the billing record.
    """
    if retention_days < 1:
        raise ValueError("retention must be at least 1 day")
    if minute_retention_days is not None and minute_retention_days < 1:
        raise ValueError("minute roll-up retention must be at least 1 day")
    now = now or datetime.now(UTC)
    cutoff = now - timedelta(days=retention_days)
    events = _delete(session, UsageRecord, [UsageRecord.at < cutoff], chunked=True, dry_run=dry_run)
    minutes = 0
    minute_cutoff = None
    if minute_retention_days is not None:
        minute_cutoff = now - timedelta(days=minute_retention_days)
        minutes = _delete(
            session,
            UsageRollup,
            [UsageRollup.granularity == "minute", UsageRollup.bucket < minute_cutoff],
            chunked=False,
            dry_run=dry_run,
        )
        _delete(
            session,
            UsageLatencyBin,
            [UsageLatencyBin.granularity == "minute", UsageLatencyBin.bucket < minute_cutoff],
            chunked=False,
            dry_run=dry_run,
        )
    return PruneResult(events, minutes, cutoff, minute_cutoff)
