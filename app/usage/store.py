"""What the usage flush stores for an event, and how its rows reach the database driver.

Why not Core's executemany: a batch whose events spread over many keys writes about ten
roll-up rows and one raw row per event, and Core processes every row's parameters in
Python (construct_params per row; SQLite's DateTime type %-formats every datetime). That
was most of the flush's CPU, spent in a thread of the serving worker, holding the GIL
(docs/performance.md, "The usage flush"). So a hot statement is compiled once per
dialect (SQLAlchemy still writes its SQL) and run through `exec_driver_sql`, which keeps
SQLAlchemy's events and error wrapping, with each row a plain sequence in the compiled
statement's parameter order; a datetime is handed over in exactly the form the column's
type would have sent (`time_param`), converted once per distinct value where values
repeat (roll-up buckets). Rows stored are the same as Core's, value for value
(tests/usage/test_stored_rows.py).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Column, insert
from sqlalchemy.engine import Connection, Dialect

from app.models import UsageRecord
from app.usage import UsageEvent

ENDPOINT_MAX = 200
METHOD_MAX = 16
IP_MAX = 45
# What no text column may hold: NUL and the other C0/C1 controls, and lone surrogates
# (JSON "\ud800" escapes, not encodable as UTF-8). The API refuses them in what a
# request reports (app/api/auth.py); the flush replaces any that still arrive, so no
# event is ever refused for its text.
UNSTORABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")

EVENTS = UsageRecord.__table__
# The raw event's columns in the order event_row() gives them: the table's, less its id.
EVENT_COLUMNS = tuple(c.name for c in EVENTS.columns if not c.primary_key)


def stored_text(value: object, limit: int) -> str:
    """Reported text as a column holds it: unstorable characters replaced, cut to size."""
    text = value if isinstance(value, str) else "" if value is None else str(value)
    if UNSTORABLE.search(text):
        text = UNSTORABLE.sub("\ufffd", text)
    return text[:limit]


def stored_ms(value: object) -> float:
    """A latency the columns can hold: finite, 0 to about 11 days."""
    if type(value) is float and 0.0 <= value <= 1e9:  # the usual case, at once
        return value
    try:
        ms = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0
    return min(max(ms, 0.0), 1e9) if math.isfinite(ms) else 0.0


def _same(at: datetime) -> datetime:
    return at


def event_row(e: UsageEvent, time: Callable[[datetime], Any] = _same) -> tuple[Any, ...]:
    """The stored form of an event, in EVENT_COLUMNS order; reported fields are cut to
    the columns' sizes, `at` given as `time` makes it (a datetime unless told)."""
    return (
        e.key_id,
        e.owner_id,
        stored_text(e.endpoint, ENDPOINT_MAX),
        stored_text(str(e.method or "").upper(), METHOD_MAX),
        e.status,
        stored_ms(e.response_ms),
        stored_text(e.client_ip, IP_MAX) or None,
        time(e.at),
    )


def insert_events(
    conn: Connection, events: Sequence[UsageEvent], statements: dict[tuple[str, str], Any]
) -> None:
    """The batch's raw events, in the connection's transaction. `statements` keeps the
    compiled INSERT between flushes (the recorder's own dict).

    PostgreSQL: COPY, which costs the database server and the worker a fraction of the
    pipelined INSERT per row that executemany sends (psycopg sends each datetime as is).
    SQLite: the INSERT compiled once, each time as the column's type writes it.
    """
    if conn.dialect.name == "postgresql":
        copy_sql = f"COPY {EVENTS.name} ({', '.join(EVENT_COLUMNS)}) FROM STDIN"
        with conn.connection.driver_connection.cursor() as cur, cur.copy(copy_sql) as copy:
            for e in events:
                copy.write_row(event_row(e))
        return
    key = (conn.dialect.name, EVENTS.name)
    prepared = statements.get(key)
    if prepared is None:
        prepared = statements[key] = prepare(
            conn.dialect, insert(EVENTS), EVENT_COLUMNS, EVENTS.c.at
        )
    time = prepared.time
    conn.exec_driver_sql(prepared.sql, [event_row(e, time) for e in events])


@dataclass(frozen=True, slots=True)
class Prepared:
    """A statement compiled once for a dialect, its parameters taken in `columns` order,
    and how a datetime parameter is handed to the driver."""

    sql: str
    columns: tuple[str, ...]
    time: Callable[[datetime], Any]


def prepare(dialect: Dialect, stmt: Any, columns: Sequence[str], time_column: Column) -> Prepared:
    """`stmt` compiled for `dialect`, its parameters given positionally in `columns` order.

    RuntimeError when the compiled statement wants other parameters or another order (a
    dialect with named parameters, or a statement that binds more than its columns).
    """
    compiled = stmt.compile(dialect=dialect, column_keys=list(columns))
    if list(compiled.positiontup or ()) != list(columns):
        raise RuntimeError(f"{stmt!r} does not take exactly {columns} in order")
    return Prepared(compiled.string, tuple(columns), time_param(dialect, time_column))


# Times whose text form has every field's edge: padding, microseconds 0 and 999999, an
# offset other than UTC.
_PROBES = (
    datetime(1, 1, 1, tzinfo=UTC),
    datetime(999, 2, 3, 4, 5, 6, 7, tzinfo=UTC),
    datetime(2026, 11, 24, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2026, 11, 25, 2, 1, 0, 5, tzinfo=timezone(timedelta(hours=2))),
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
)


def _sqlite_time(at: datetime) -> str:
    """SQLite's DateTime text of a UTC datetime, "YYYY-MM-DD HH:MM:SS.ffffff", by
    isoformat instead of the type's %-formatting of seven fields."""
    if at.tzinfo is not UTC:
        if at.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        at = at.astimezone(UTC)
    return at.isoformat(" ", "microseconds")[:26]


def time_param(dialect: Dialect, column: Column) -> Callable[[datetime], Any]:
    """What `column`'s type hands the driver for a datetime on `dialect`.

    On SQLite the cheaper `_sqlite_time`, if it writes exactly the type's text for every
    probe (else the type's own processor: a SQLAlchemy with another storage format).
    """
    process = column.type.dialect_impl(dialect).bind_processor(dialect) or _same
    if dialect.name == "sqlite" and all(_sqlite_time(t) == process(t) for t in _PROBES):
        return _sqlite_time
    return process
