"""The billing snapshot: each closed day's hour roll-ups summed per key and tier, once.

A month's lines (app.billing.lines) would otherwise sum every hour row of the month
on every view and export. A UTC day is *closed* once it ended more than GRACE ago;
`close` writes a closed day's billing_day rows and its billing_day_closed marker in one
transaction, and lines() reads those rows for the days that have a marker and hour rows
for the rest (today, and a day reopened by late data).

Late data: the recorder writes an event into a past day (a batch kept through a database
outage, `flask demo seed`) in the transaction that calls `reopen` for that day, which
removes its marker and rows; the next view or `flask billing close` writes it again.

Concurrent writers. The marker row is the claim: `close` inserts it (ON CONFLICT DO
NOTHING) before it reads the day's hour rows, so a second writer of the same day waits
for the first one's commit and then skips the day. `reopen` inserts the marker the same
way before deleting it, so it waits for a snapshot of that day being written and then
removes it; a snapshot claimed after it waits for its commit and sees its hour rows. (A
plain DELETE would not wait for an uncommitted marker on PostgreSQL, and a snapshot
read before the late rows were committed would survive them.) On SQLite every writer
holds the database's write lock, so they are serialized anyway.

No Flask here: the recorder's flush calls `reopen`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, insert, literal, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from app import dialects, times
from app.models import BillingDay, BillingDayClosed, UsageRollup
from app.models._types import UTCDateTime

DAY = timedelta(days=1)
# How long after midnight a day is left to the hour rows. Events reach the database up
# to a flush interval after they happened (longer while a batch is retried), and a
# worker whose clock runs behind still counts them as today, so it would not reopen a
# day it writes into. Late data is still billed after the grace (reopen); the grace only
# keeps the last batches before midnight from undoing a snapshot seconds after it.
GRACE = timedelta(minutes=15)

# SQL for "billable" over a roll-up row; the Python twin is app.billing.is_billable.
BILLABLE = (
    UsageRollup.status_2xx
    + UsageRollup.status_3xx
    + UsageRollup.status_4xx
    - UsageRollup.status_429
)
# The stored tier of hours written without one (a primary key column has no NULL).
NO_TIER = ""


def day_of(at: datetime) -> datetime:
    """The UTC midnight that starts `at`'s day."""
    return times.floor(at, "day")


def closed_through(now: datetime) -> datetime:
    """The end of the last closed day: every day ending at or before it is closed."""
    return day_of(now - GRACE)


def closed_days(start: datetime, end: datetime, now: datetime) -> tuple[datetime, datetime]:
    """[lo, hi): the whole days of [start, end) that are closed at `now` (maybe none)."""
    lo = day_of(start)
    if lo < start:
        lo += DAY
    hi = min(day_of(end), closed_through(now))
    return lo, max(lo, hi)


def days(lo: datetime, hi: datetime) -> Iterator[datetime]:
    day = lo
    while day < hi:
        yield day
        day += DAY


def written(session: Session, lo: datetime, hi: datetime) -> dict[datetime, datetime]:
    """The days of [lo, hi) with a snapshot, and when each was written."""
    if lo >= hi:
        return {}
    rows = session.execute(
        select(BillingDayClosed.day, BillingDayClosed.computed_at).where(
            BillingDayClosed.day >= lo, BillingDayClosed.day < hi
        )
    )
    return {day: at for day, at in rows}


@dataclass(frozen=True)
class Closed:
    days: int  # days written now (not those written before)
    rows: int  # billing_day rows they have


def close(bind: Engine | Connection, lo: datetime, hi: datetime, *, now: datetime) -> Closed:
    """Write the snapshot of each day of [lo, hi) closed at `now` that has none, a day
    per commit.

    Its own session on `bind`, so the caller's transaction is left as it was; a
    transaction per day keeps SQLite's write lock (which the recorder waits for) short.
    computed_at is the clock's time, not `now`: lines() tells a rewritten day by it.
    """
    hi = min(hi, closed_through(now))
    n_days = n_rows = 0
    with Session(bind) as session:
        have = written(session, lo, hi)
        session.rollback()  # end the read: each day below is a transaction of its own
        for day in days(lo, hi):
            if day in have:
                continue
            with session.begin():
                claim = _insert_ignore(session, BillingDayClosed).values(
                    day=day, computed_at=datetime.now(UTC)
                )
                if session.scalar(claim.returning(BillingDayClosed.__table__.c.day)) is None:
                    continue  # another writer has it (and waited for it to commit)
                n_rows += session.execute(_snapshot_of(day)).rowcount or 0
                n_days += 1
    return Closed(n_days, n_rows)


def close_all(
    bind: Engine | Connection, *, now: datetime, through: datetime | None = None
) -> tuple[Closed, datetime | None]:
    """Snapshot every closed day from the first hour row on (through the day `through`
    starts, when given); returns what was written and the last day covered."""
    hi = closed_through(now)
    if through is not None:
        hi = min(hi, day_of(through) + DAY)
    with Session(bind) as session:
        first = session.scalar(
            select(func.min(UsageRollup.bucket)).where(UsageRollup.granularity == "hour")
        )
    if first is None or day_of(first) >= hi:
        return Closed(0, 0), None
    return close(bind, day_of(first), hi, now=now), hi - DAY


def reopen(session: Session, past: Sequence[datetime]) -> None:
    """Drop the snapshot of these days (UTC midnights): rows are being added to them.

    Called in the transaction that adds them (the recorder's flush), so the day is
    reopened exactly when its new rows are committed. The insert first waits for a
    snapshot of the day still being written (see the module docstring).
    """
    if not past:
        return
    wanted = sorted(set(past))  # one lock order for every writer
    now = datetime.now(UTC)
    session.execute(
        _insert_ignore(session, BillingDayClosed).values(
            [{"day": day, "computed_at": now} for day in wanted]
        )
    )
    for table in (BillingDayClosed.__table__, BillingDay.__table__):
        session.execute(delete(table).where(table.c.day.in_(wanted)))


def _snapshot_of(day: datetime) -> Any:
    """INSERT ... SELECT: the day's hour rows summed per key and recorded tier, as
    app.billing.lines sums them."""
    tier = func.coalesce(UsageRollup.tier, NO_TIER)
    query = (
        select(
            UsageRollup.key_id,
            literal(day, UTCDateTime()),
            tier,
            func.count(literal(1)),
            func.sum(UsageRollup.count),
            func.sum(BILLABLE),
        )
        .where(
            UsageRollup.granularity == "hour",
            UsageRollup.bucket >= day,
            UsageRollup.bucket < day + DAY,
        )
        .group_by(UsageRollup.key_id, tier)
    )
    columns = ["key_id", "day", "tier", "hours", "requests", "billable"]
    # preserve_rowcount: SQLAlchemy keeps an INSERT's row count only when asked.
    return (
        insert(BillingDay.__table__)
        .from_select(columns, query)
        .execution_options(preserve_rowcount=True)
    )


def _insert_ignore(session: Session, model: type) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING in the session's dialect."""
    return dialects.insert(session, model).on_conflict_do_nothing()
