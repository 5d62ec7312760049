"""A batch of usage events summed per key and period, then added to the stored roll-ups.

Each event counts in up to ten roll-up rows: usage_rollup and usage_latency_bin by
minute, hour and day, usage_top_rollup by endpoint and by client IP, by hour and day.
When a batch's events spread over many keys, each is most of ten rows of its own, so
the per-event work here is kept to dictionary updates on tuples: a minute's buckets
(and their parameters) are worked out once per minute seen, a status's columns once per
status, and each row is built as the list of values its upsert takes (column positions
from the table metadata), so nothing is copied into dicts or processed per row again
(app/usage/store.py). Every stored value is what the Core statements stored before
(tests/usage/test_stored_rows.py); a row's latency sum adds its events in batch order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Float, Table
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from app import dialects
from app.billing import snapshot
from app.models import UsageLatencyBin, UsageRollup, UsageTopRollup
from app.times import floor, utc
from app.usage import UsageEvent
from app.usage.histogram import bin_of
from app.usage.store import (
    ENDPOINT_MAX,
    Prepared,
    prepare,
    stored_ms,
    stored_text,
    time_param,
)

ROLLUPS: Table = UsageRollup.__table__
BINS: Table = UsageLatencyBin.__table__
TOPS: Table = UsageTopRollup.__table__
# The 4xx answers the dashboards count apart (they stay in status_4xx as well).
FOUR_XX_PARTS = {401: "status_401_403", 403: "status_401_403", 429: "status_429"}
# Columns the first write of a period sets and later ones leave: the rest are sums.
KEPT = ("owner_id", "tier")
MINUTE = timedelta(minutes=1)


def status_class(status: int) -> str:
    """'2xx'..'5xx', or 'other' for anything a calling service made up."""
    return f"{status // 100}xx" if 200 <= status <= 599 else "other"


def _primary_key(table: Table) -> tuple[str, ...]:
    return tuple(c.name for c in table.primary_key.columns)


def _values(table: Table) -> tuple[str, ...]:
    """The columns after the key, in the table's order: what a row's list holds."""
    return tuple(c.name for c in table.columns if not c.primary_key)


def columns(table: Table) -> tuple[str, ...]:
    """The order an upsert takes a row's values in: key, then the other columns."""
    return _primary_key(table) + _values(table)


# The aggregation builds each row's key in this order (checked here, once).
for _table, _key in (
    (ROLLUPS, ("key_id", "granularity", "bucket")),
    (BINS, ("key_id", "granularity", "bucket", "bin")),
    (TOPS, ("key_id", "dim", "granularity", "bucket", "value")),
):
    if _primary_key(_table) != _key:
        raise RuntimeError(f"{_table.name}'s key is {_primary_key(_table)}, not {_key}")

_R = {name: i for i, name in enumerate(_values(ROLLUPS))}
_R_BLANK = [0.0 if isinstance(ROLLUPS.c[n].type, Float) else 0 for n in _values(ROLLUPS)]
_R_OWNER, _R_TIER, _R_COUNT, _R_LATENCY = (
    _R["owner_id"],
    _R["tier"],
    _R["count"],
    _R["latency_sum_ms"],
)
_T = {name: i for i, name in enumerate(_values(TOPS))}
_T_BLANK = [0] * len(_T)
_T_OWNER, _T_COUNT, _T_ERRORS = _T["owner_id"], _T["count"], _T["errors"]


@dataclass(slots=True)
class _Minute:
    """One UTC minute's buckets, worked out once per batch: its end, and the minute,
    hour and day they fall in."""

    start: datetime
    end: datetime
    hour: datetime
    day: datetime


# Before the first event: a span no time falls in.
_NOWHERE = _Minute(*(datetime.max.replace(tzinfo=UTC),) * 2, datetime.min, datetime.min)


@dataclass(slots=True)
class Sums:
    """A batch summed: row key -> the row's other values (in _values order)."""

    rollups: dict[tuple[Any, ...], list[Any]] = field(default_factory=dict)
    bins: dict[tuple[Any, ...], list[int]] = field(default_factory=dict)
    tops: dict[tuple[Any, ...], list[Any]] = field(default_factory=dict)
    days: set[datetime] = field(default_factory=set)
    buckets: set[datetime] = field(default_factory=set)


def aggregate(events: Sequence[UsageEvent]) -> Sums:
    """The batch's roll-up rows, summed in memory (the stored rows get them added)."""
    sums = Sums()
    rollups, bins, tops = sums.rollups, sums.bins, sums.tops
    minutes: dict[datetime, _Minute] = {}
    statuses: dict[int, tuple[int, int | None, int]] = {}
    endpoints: dict[Any, str] = {}
    span = _NOWHERE
    for e in events:
        key_id = e.key_id
        status = e.status
        st = statuses.get(status)
        if st is None:
            part = FOUR_XX_PARTS.get(status)
            st = statuses[status] = (
                _R[f"status_{status_class(status)}"],
                None if part is None else _R[part],
                1 if status >= 400 else 0,
            )
        cls, part_at, failed = st
        ms = stored_ms(e.response_ms)
        b = bin_of(ms)
        at = e.at
        if at.tzinfo is not UTC:
            at = utc(at)
        if not span.start <= at < span.end:
            start = floor(at, "minute")
            known = minutes.get(start)
            if known is None:
                hour = start.replace(minute=0)
                known = minutes[start] = _Minute(start, start + MINUTE, hour, hour.replace(hour=0))
            span = known
        minute, hour, day = span.start, span.hour, span.day

        for pk in ((key_id, "minute", minute), (key_id, "hour", hour), (key_id, "day", day)):
            row = rollups.get(pk)
            if row is None:
                row = rollups[pk] = _R_BLANK.copy()
                row[_R_OWNER] = e.owner_id
                row[_R_TIER] = e.tier
            row[_R_COUNT] += 1
            row[cls] += 1
            if part_at is not None:
                row[part_at] += 1
            row[_R_LATENCY] += ms
            bk = (*pk, b)
            cell = bins.get(bk)
            if cell is None:
                bins[bk] = [1]
            else:
                cell[0] += 1

        # The endpoint as the raw event stores it (reported paths repeat: once each).
        reported = e.endpoint
        endpoint = endpoints.get(reported) if type(reported) is str else None
        if endpoint is None:
            endpoint = stored_text(reported, ENDPOINT_MAX)
            if type(reported) is str:
                endpoints[reported] = endpoint
        ip = e.client_ip
        for dim, value in (("endpoint", endpoint), ("ip", ip[:ENDPOINT_MAX] if ip else ip)):
            if value:
                for tk in ((key_id, dim, "hour", hour, value), (key_id, dim, "day", day, value)):
                    top = tops.get(tk)
                    if top is None:
                        top = tops[tk] = _T_BLANK.copy()
                        top[_T_OWNER] = e.owner_id
                    top[_T_COUNT] += 1
                    top[_T_ERRORS] += failed
    for span in minutes.values():
        sums.days.add(span.day)
        sums.buckets.update((span.start, span.hour, span.day))
    return sums


def add(
    session: Session,
    events: Sequence[UsageEvent],
    statements: dict[tuple[str, str], Any] | None = None,
) -> None:
    """Add a batch's events to the stored roll-ups, in the session's transaction.
    `statements` keeps the compiled upserts between flushes (the recorder's own dict)."""
    sums = aggregate(events)
    # Rows for a day before today: that day's billing snapshot is reopened, in this
    # transaction and before the roll-up rows are locked (app/billing/snapshot.py). The
    # usual batch, today's only, adds no query.
    today = floor(datetime.now(UTC), "day")
    past = [day for day in sums.days if day < today]
    if past:
        snapshot.reopen(session, past)
    conn = session.connection()
    statements = {} if statements is None else statements
    for table, cells in ((ROLLUPS, sums.rollups), (BINS, sums.bins), (TOPS, sums.tops)):
        if cells:
            _upsert(conn, table, cells, sums.buckets, statements)


def _upsert(
    conn: Connection,
    table: Table,
    cells: dict[tuple[Any, ...], list[Any]],
    buckets: set[datetime],
    statements: dict[tuple[str, str], Any],
) -> None:
    """One upsert of `cells` into `table`, rows sorted by key, so that concurrent
    flushes lock rows in one order and cannot deadlock."""
    dialect = dialects.name_of(conn)
    prepared = statements.get((dialect, table.name))
    if prepared is None:
        prepared = statements[(dialect, table.name)] = _prepare_upsert(conn, table)
    params: dict[datetime, Any] = {b: prepared.time(b) for b in buckets}
    at = _primary_key(table).index("bucket")
    rows = [(*pk[:at], params[pk[at]], *pk[at + 1 :], *cells[pk]) for pk in sorted(cells)]
    if dialect == "postgresql":  # one statement: the batch's columns as arrays
        arrays = zip(prepared.columns, zip(*rows, strict=True), strict=True)
        conn.exec_driver_sql(prepared.sql, {name: list(values) for name, values in arrays})
    else:
        conn.exec_driver_sql(prepared.sql, rows)


def _prepare_upsert(conn: Connection, table: Table) -> Prepared:
    """The upsert that adds a batch's counts (and latency sums) to a roll-up table's
    stored rows, compiled once per dialect and table: building `excluded` and its column
    collection on every flush showed in profiles of a busy worker (docs/performance.md,
    "The usage flush").

    PostgreSQL: INSERT ... SELECT FROM unnest(arrays) ON CONFLICT, one statement per
    table; executemany sent one upsert per row (pipelined), about three per event when a
    batch touches many keys, and the server's per-statement work was most of the flush.
    SQLite: INSERT ... ON CONFLICT, run with executemany (in process, no round trips).
    """
    keys = _primary_key(table)
    names = columns(table)
    added = [n for n in _values(table) if n not in KEPT]
    if dialects.name_of(conn) == "postgresql":
        # psycopg's placeholders, %(name)b: each array in binary, which psycopg builds
        # at a fraction of the text form's cost (no quoting and escaping per element).
        arrays = ", ".join(
            f"CAST(%({n})b AS {table.c[n].type.compile(dialect=conn.dialect)}[])" for n in names
        )
        updates = ", ".join(f"{n} = {table.name}.{n} + excluded.{n}" for n in added)
        # Names come from our own table metadata; every value is a bound array.
        sql = (
            f"INSERT INTO {table.name} ({', '.join(names)}) SELECT * FROM unnest({arrays}) "  # noqa: S608
            f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}"
        )
        return Prepared(sql, names, time_param(conn.dialect, table.c.bucket))
    stmt = dialects.insert(conn, table)
    stmt = stmt.on_conflict_do_update(
        index_elements=keys, set_={n: stmt.table.c[n] + stmt.excluded[n] for n in added}
    )
    return prepare(conn.dialect, stmt, names, table.c.bucket)
