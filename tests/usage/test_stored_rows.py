"""Every row the flush stores, value for value, for a batch that touches each branch.

The flush writes through prepared DBAPI statements for speed (app/usage/store.py); this
pins what it stores to what the Core statements it replaced stored (expected rows taken
from them, on SQLite and PostgreSQL alike): past and current days, minute, hour and day
edges, every status class and the 401/403/429 parts, odd endpoints, methods, IPs and
latencies, text the columns cannot hold, a non-UTC time, and a second flush that adds to
the stored rows. Datetimes are compared as the text SQLite stores (and, on SQLite, as the
stored text itself), floats exactly.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select
from support.db import USE_PG
from support.usage import Key, make_key
from support.web import Portal

from app.extensions import db
from app.models import ApiKey, UsageLatencyBin, UsageRecord, UsageRollup, UsageTopRollup
from app.usage import UsageEvent, recorder

D = datetime(2026, 11, 25, tzinfo=UTC)
PLUS_TWO = timezone(timedelta(hours=2))
LONG_IP = "2001:0db8:85a3:0000:0000:8a2e:0370:7334%interface1"  # 50 characters
STORED_TIME = "%Y-%m-%d %H:%M:%S.%f"


def event(key: Key, at: datetime, status: int, ms: Any, **fields: Any) -> UsageEvent:
    values: dict[str, Any] = {
        "endpoint": "/v1/things",
        "method": "GET",
        "client_ip": "203.0.113.7",
        "tier": "enterprise",
    }
    values.update(fields)
    return UsageEvent(
        key_id=key.id, owner_id=key.owner_id, status=status, response_ms=ms, at=at, **values
    )


def first_batch(a: Key, b: Key) -> list[UsageEvent]:
    us = timedelta(microseconds=1)
    return [
        event(a, D - us, 200, 0.1),
        event(b, D - us, 200, 2.5, tier=None, client_ip="198.51.100.9"),
        event(a, D, 401, 0.2, method="get", tier="pro"),
        event(a, D + timedelta(seconds=30.5), 403, 0.3, endpoint="/v1/\x00nul", method="po\x85st"),
        event(
            a,
            datetime(2026, 11, 25, 2, 1, 0, 123456, tzinfo=PLUS_TWO),
            429,
            float("nan"),
            client_ip="2001:db8::1",
        ),
        event(
            a,
            D + timedelta(minutes=1, seconds=59) + timedelta(microseconds=999999),
            500,
            float("inf"),
            endpoint="x" * 250,
            method="VERYLONGMETHODNAME123",
            client_ip=None,
        ),
        event(b, D + timedelta(minutes=1), 204, 0.7, tier="free"),
        event(a, D + timedelta(minutes=59), 302, -5.0, endpoint="", client_ip=""),
        event(
            a, D + timedelta(hours=1), 99, 1e12, endpoint="/v1/\ud800surrogate", client_ip=LONG_IP
        ),
        event(a, D + timedelta(hours=1), 600, 3, method=None),
        event(a, D + timedelta(hours=1, seconds=1), 404, 0.001, endpoint=None, method=""),
        event(a, D + timedelta(hours=1, seconds=2), 201, 123.456),
        event(b, D + timedelta(hours=1, seconds=3), 503, 17.0, endpoint="/v1/other"),
        event(a, D + timedelta(hours=1, seconds=4), 429, "7.25"),
    ]


def second_batch(a: Key, b: Key) -> list[UsageEvent]:
    return [
        event(a, D + timedelta(seconds=10), 200, 0.7, tier="free"),
        event(b, D + timedelta(hours=1, seconds=30), 200, 1.1, endpoint="/v1/other"),
        event(a, D + timedelta(hours=2), 401, 0.4),  # refused: not a use of the key
    ]


def stored(app: Flask, names: dict[int, str]) -> dict[str, list[tuple[Any, ...]]]:
    """The four tables and the keys' last use, keys by name, datetimes as stored text."""

    def value(v: Any) -> Any:
        if isinstance(v, datetime):
            assert v.tzinfo is not None and v.utcoffset() == timedelta(0)
            return v.strftime(STORED_TIME)
        return v

    out: dict[str, list[tuple[Any, ...]]] = {}
    with app.app_context():
        for model in (UsageRecord, UsageRollup, UsageLatencyBin, UsageTopRollup):
            table = model.__table__
            columns = [c for c in table.columns if c.name != "id"]
            order = [table.c.id] if "id" in table.c else list(table.primary_key.columns)
            rows = db.session.execute(select(*columns).order_by(*order)).all()
            out[table.name] = [
                tuple(
                    names[v] if c.name == "key_id" else value(v)
                    for c, v in zip(columns, r, strict=True)
                )
                for r in rows
            ]
        keys = db.session.execute(
            select(ApiKey.id, ApiKey.last_used_at, ApiKey.last_used_ip).order_by(ApiKey.id)
        ).all()
        out["api_key"] = [(names[i], value(at), ip) for i, at, ip in keys]
    return out


def test_the_flush_stores_exactly_these_rows(app: Flask, key: Key, user: Portal) -> None:
    other = make_key(app, user, name="other")
    names = {key.id: "a", other.id: "b"}
    rec = recorder(app)
    for e in first_batch(key, other):
        rec.record(e)
    rec.flush()
    for e in second_batch(key, other):
        rec.record(e)
    rec.flush()

    got = stored(app, names)
    for table, rows in EXPECTED.items():
        owner = key.owner_id
        want = [tuple(owner if v == "OWNER" else v for v in row) for row in rows]
        assert got[table] == want, table


@pytest.mark.skipif(USE_PG, reason="SQLite's stored text")
def test_sqlite_holds_the_text_sqlalchemy_writes(app: Flask, key: Key) -> None:
    """The stored text itself, which SQLite's string comparisons and substr read."""
    rec = recorder(app)
    rec.record(event(key, D - timedelta(microseconds=1), 200, 1.0))
    rec.record(event(key, datetime(2026, 11, 25, 2, 1, 0, 5, tzinfo=PLUS_TWO), 200, 1.0))
    rec.flush()
    with app.app_context(), db.engine.connect() as conn:
        raw = conn.exec_driver_sql("SELECT at FROM usage_event ORDER BY id").scalars().all()
        buckets = (
            conn.exec_driver_sql("SELECT DISTINCT bucket FROM usage_rollup ORDER BY bucket")
            .scalars()
            .all()
        )
        last = conn.exec_driver_sql(
            "SELECT last_used_at FROM api_key WHERE id = ?", (key.id,)
        ).scalar_one()
    assert raw == ["2026-11-24 23:59:59.999999", "2026-11-25 00:01:00.000005"]
    assert buckets == [
        "2026-11-24 00:00:00.000000",
        "2026-11-24 23:00:00.000000",
        "2026-11-24 23:59:00.000000",
        "2026-11-25 00:00:00.000000",
        "2026-11-25 00:01:00.000000",
    ]
    assert last == "2026-11-25 00:01:00.000005"


EXPECTED: dict[str, list[tuple[Any, ...]]] = {
    "usage_event": [
        ("a", "OWNER", "/v1/things", "GET", 200, 0.1, "203.0.113.7", "2026-11-24 23:59:59.999999"),
        ("b", "OWNER", "/v1/things", "GET", 200, 2.5, "198.51.100.9", "2026-11-24 23:59:59.999999"),
        ("a", "OWNER", "/v1/things", "GET", 401, 0.2, "203.0.113.7", "2026-11-25 00:00:00.000000"),
        (
            "a",
            "OWNER",
            "/v1/\ufffdnul",
            "PO\ufffdST",
            403,
            0.3,
            "203.0.113.7",
            "2026-11-25 00:00:30.500000",
        ),
        ("a", "OWNER", "/v1/things", "GET", 429, 0.0, "2001:db8::1", "2026-11-25 00:01:00.123456"),
        ("a", "OWNER", "x" * 200, "VERYLONGMETHODNA", 500, 0.0, None, "2026-11-25 00:01:59.999999"),
        ("b", "OWNER", "/v1/things", "GET", 204, 0.7, "203.0.113.7", "2026-11-25 00:01:00.000000"),
        ("a", "OWNER", "", "GET", 302, 0.0, None, "2026-11-25 00:59:00.000000"),
        (
            "a",
            "OWNER",
            "/v1/\ufffdsurrogate",
            "GET",
            99,
            1000000000.0,
            "2001:0db8:85a3:0000:0000:8a2e:0370:7334%inter",
            "2026-11-25 01:00:00.000000",
        ),
        ("a", "OWNER", "/v1/things", "", 600, 3.0, "203.0.113.7", "2026-11-25 01:00:00.000000"),
        ("a", "OWNER", "", "", 404, 0.001, "203.0.113.7", "2026-11-25 01:00:01.000000"),
        (
            "a",
            "OWNER",
            "/v1/things",
            "GET",
            201,
            123.456,
            "203.0.113.7",
            "2026-11-25 01:00:02.000000",
        ),
        ("b", "OWNER", "/v1/other", "GET", 503, 17.0, "203.0.113.7", "2026-11-25 01:00:03.000000"),
        ("a", "OWNER", "/v1/things", "GET", 429, 7.25, "203.0.113.7", "2026-11-25 01:00:04.000000"),
        ("a", "OWNER", "/v1/things", "GET", 200, 0.7, "203.0.113.7", "2026-11-25 00:00:10.000000"),
        ("b", "OWNER", "/v1/other", "GET", 200, 1.1, "203.0.113.7", "2026-11-25 01:00:30.000000"),
        ("a", "OWNER", "/v1/things", "GET", 401, 0.4, "203.0.113.7", "2026-11-25 02:00:00.000000"),
    ],
    "usage_rollup": [
        (
            "a",
            "day",
            "2026-11-24 00:00:00.000000",
            "OWNER",
            1,
            1,
            0,
            0,
            0,
            0,
            0,
            0,
            0.1,
            "enterprise",
        ),
        (
            "a",
            "day",
            "2026-11-25 00:00:00.000000",
            "OWNER",
            12,
            2,
            1,
            6,
            1,
            2,
            3,
            2,
            1000000135.307,
            "pro",
        ),
        (
            "a",
            "hour",
            "2026-11-24 23:00:00.000000",
            "OWNER",
            1,
            1,
            0,
            0,
            0,
            0,
            0,
            0,
            0.1,
            "enterprise",
        ),
        ("a", "hour", "2026-11-25 00:00:00.000000", "OWNER", 6, 1, 1, 3, 1, 0, 2, 1, 1.2, "pro"),
        (
            "a",
            "hour",
            "2026-11-25 01:00:00.000000",
            "OWNER",
            5,
            1,
            0,
            2,
            0,
            2,
            0,
            1,
            1000000133.707,
            "enterprise",
        ),
        (
            "a",
            "hour",
            "2026-11-25 02:00:00.000000",
            "OWNER",
            1,
            0,
            0,
            1,
            0,
            0,
            1,
            0,
            0.4,
            "enterprise",
        ),
        (
            "a",
            "minute",
            "2026-11-24 23:59:00.000000",
            "OWNER",
            1,
            1,
            0,
            0,
            0,
            0,
            0,
            0,
            0.1,
            "enterprise",
        ),
        ("a", "minute", "2026-11-25 00:00:00.000000", "OWNER", 3, 1, 0, 2, 0, 0, 2, 0, 1.2, "pro"),
        (
            "a",
            "minute",
            "2026-11-25 00:01:00.000000",
            "OWNER",
            2,
            0,
            0,
            1,
            1,
            0,
            0,
            1,
            0.0,
            "enterprise",
        ),
        (
            "a",
            "minute",
            "2026-11-25 00:59:00.000000",
            "OWNER",
            1,
            0,
            1,
            0,
            0,
            0,
            0,
            0,
            0.0,
            "enterprise",
        ),
        (
            "a",
            "minute",
            "2026-11-25 01:00:00.000000",
            "OWNER",
            5,
            1,
            0,
            2,
            0,
            2,
            0,
            1,
            1000000133.707,
            "enterprise",
        ),
        (
            "a",
            "minute",
            "2026-11-25 02:00:00.000000",
            "OWNER",
            1,
            0,
            0,
            1,
            0,
            0,
            1,
            0,
            0.4,
            "enterprise",
        ),
        ("b", "day", "2026-11-24 00:00:00.000000", "OWNER", 1, 1, 0, 0, 0, 0, 0, 0, 2.5, None),
        ("b", "day", "2026-11-25 00:00:00.000000", "OWNER", 3, 2, 0, 0, 1, 0, 0, 0, 18.8, "free"),
        ("b", "hour", "2026-11-24 23:00:00.000000", "OWNER", 1, 1, 0, 0, 0, 0, 0, 0, 2.5, None),
        ("b", "hour", "2026-11-25 00:00:00.000000", "OWNER", 1, 1, 0, 0, 0, 0, 0, 0, 0.7, "free"),
        (
            "b",
            "hour",
            "2026-11-25 01:00:00.000000",
            "OWNER",
            2,
            1,
            0,
            0,
            1,
            0,
            0,
            0,
            18.1,
            "enterprise",
        ),
        ("b", "minute", "2026-11-24 23:59:00.000000", "OWNER", 1, 1, 0, 0, 0, 0, 0, 0, 2.5, None),
        ("b", "minute", "2026-11-25 00:01:00.000000", "OWNER", 1, 1, 0, 0, 0, 0, 0, 0, 0.7, "free"),
        (
            "b",
            "minute",
            "2026-11-25 01:00:00.000000",
            "OWNER",
            2,
            1,
            0,
            0,
            1,
            0,
            0,
            0,
            18.1,
            "enterprise",
        ),
    ],
    "usage_latency_bin": [
        ("a", "day", "2026-11-24 00:00:00.000000", 11, 1),
        ("a", "day", "2026-11-25 00:00:00.000000", 0, 4),
        ("a", "day", "2026-11-25 00:00:00.000000", 15, 1),
        ("a", "day", "2026-11-25 00:00:00.000000", 18, 1),
        ("a", "day", "2026-11-25 00:00:00.000000", 19, 1),
        ("a", "day", "2026-11-25 00:00:00.000000", 22, 1),
        ("a", "day", "2026-11-25 00:00:00.000000", 31, 1),
        ("a", "day", "2026-11-25 00:00:00.000000", 36, 1),
        ("a", "day", "2026-11-25 00:00:00.000000", 52, 1),
        ("a", "day", "2026-11-25 00:00:00.000000", 104, 1),
        ("a", "hour", "2026-11-24 23:00:00.000000", 11, 1),
        ("a", "hour", "2026-11-25 00:00:00.000000", 0, 3),
        ("a", "hour", "2026-11-25 00:00:00.000000", 15, 1),
        ("a", "hour", "2026-11-25 00:00:00.000000", 18, 1),
        ("a", "hour", "2026-11-25 00:00:00.000000", 22, 1),
        ("a", "hour", "2026-11-25 01:00:00.000000", 0, 1),
        ("a", "hour", "2026-11-25 01:00:00.000000", 31, 1),
        ("a", "hour", "2026-11-25 01:00:00.000000", 36, 1),
        ("a", "hour", "2026-11-25 01:00:00.000000", 52, 1),
        ("a", "hour", "2026-11-25 01:00:00.000000", 104, 1),
        ("a", "hour", "2026-11-25 02:00:00.000000", 19, 1),
        ("a", "minute", "2026-11-24 23:59:00.000000", 11, 1),
        ("a", "minute", "2026-11-25 00:00:00.000000", 15, 1),
        ("a", "minute", "2026-11-25 00:00:00.000000", 18, 1),
        ("a", "minute", "2026-11-25 00:00:00.000000", 22, 1),
        ("a", "minute", "2026-11-25 00:01:00.000000", 0, 2),
        ("a", "minute", "2026-11-25 00:59:00.000000", 0, 1),
        ("a", "minute", "2026-11-25 01:00:00.000000", 0, 1),
        ("a", "minute", "2026-11-25 01:00:00.000000", 31, 1),
        ("a", "minute", "2026-11-25 01:00:00.000000", 36, 1),
        ("a", "minute", "2026-11-25 01:00:00.000000", 52, 1),
        ("a", "minute", "2026-11-25 01:00:00.000000", 104, 1),
        ("a", "minute", "2026-11-25 02:00:00.000000", 19, 1),
        ("b", "day", "2026-11-24 00:00:00.000000", 30, 1),
        ("b", "day", "2026-11-25 00:00:00.000000", 22, 1),
        ("b", "day", "2026-11-25 00:00:00.000000", 25, 1),
        ("b", "day", "2026-11-25 00:00:00.000000", 41, 1),
        ("b", "hour", "2026-11-24 23:00:00.000000", 30, 1),
        ("b", "hour", "2026-11-25 00:00:00.000000", 22, 1),
        ("b", "hour", "2026-11-25 01:00:00.000000", 25, 1),
        ("b", "hour", "2026-11-25 01:00:00.000000", 41, 1),
        ("b", "minute", "2026-11-24 23:59:00.000000", 30, 1),
        ("b", "minute", "2026-11-25 00:01:00.000000", 22, 1),
        ("b", "minute", "2026-11-25 01:00:00.000000", 25, 1),
        ("b", "minute", "2026-11-25 01:00:00.000000", 41, 1),
    ],
    "usage_top_rollup": [
        ("a", "endpoint", "day", "2026-11-24 00:00:00.000000", "/v1/things", "OWNER", 1, 0),
        ("a", "endpoint", "day", "2026-11-25 00:00:00.000000", "/v1/things", "OWNER", 7, 5),
        ("a", "endpoint", "day", "2026-11-25 00:00:00.000000", "/v1/\ufffdnul", "OWNER", 1, 1),
        (
            "a",
            "endpoint",
            "day",
            "2026-11-25 00:00:00.000000",
            "/v1/\ufffdsurrogate",
            "OWNER",
            1,
            0,
        ),
        ("a", "endpoint", "day", "2026-11-25 00:00:00.000000", "x" * 200, "OWNER", 1, 1),
        ("a", "endpoint", "hour", "2026-11-24 23:00:00.000000", "/v1/things", "OWNER", 1, 0),
        ("a", "endpoint", "hour", "2026-11-25 00:00:00.000000", "/v1/things", "OWNER", 3, 2),
        ("a", "endpoint", "hour", "2026-11-25 00:00:00.000000", "/v1/\ufffdnul", "OWNER", 1, 1),
        ("a", "endpoint", "hour", "2026-11-25 00:00:00.000000", "x" * 200, "OWNER", 1, 1),
        ("a", "endpoint", "hour", "2026-11-25 01:00:00.000000", "/v1/things", "OWNER", 3, 2),
        (
            "a",
            "endpoint",
            "hour",
            "2026-11-25 01:00:00.000000",
            "/v1/\ufffdsurrogate",
            "OWNER",
            1,
            0,
        ),
        ("a", "endpoint", "hour", "2026-11-25 02:00:00.000000", "/v1/things", "OWNER", 1, 1),
        ("a", "ip", "day", "2026-11-24 00:00:00.000000", "203.0.113.7", "OWNER", 1, 0),
        ("a", "ip", "day", "2026-11-25 00:00:00.000000", LONG_IP, "OWNER", 1, 0),
        ("a", "ip", "day", "2026-11-25 00:00:00.000000", "2001:db8::1", "OWNER", 1, 1),
        ("a", "ip", "day", "2026-11-25 00:00:00.000000", "203.0.113.7", "OWNER", 8, 6),
        ("a", "ip", "hour", "2026-11-24 23:00:00.000000", "203.0.113.7", "OWNER", 1, 0),
        ("a", "ip", "hour", "2026-11-25 00:00:00.000000", "2001:db8::1", "OWNER", 1, 1),
        ("a", "ip", "hour", "2026-11-25 00:00:00.000000", "203.0.113.7", "OWNER", 3, 2),
        ("a", "ip", "hour", "2026-11-25 01:00:00.000000", LONG_IP, "OWNER", 1, 0),
        ("a", "ip", "hour", "2026-11-25 01:00:00.000000", "203.0.113.7", "OWNER", 4, 3),
        ("a", "ip", "hour", "2026-11-25 02:00:00.000000", "203.0.113.7", "OWNER", 1, 1),
        ("b", "endpoint", "day", "2026-11-24 00:00:00.000000", "/v1/things", "OWNER", 1, 0),
        ("b", "endpoint", "day", "2026-11-25 00:00:00.000000", "/v1/other", "OWNER", 2, 1),
        ("b", "endpoint", "day", "2026-11-25 00:00:00.000000", "/v1/things", "OWNER", 1, 0),
        ("b", "endpoint", "hour", "2026-11-24 23:00:00.000000", "/v1/things", "OWNER", 1, 0),
        ("b", "endpoint", "hour", "2026-11-25 00:00:00.000000", "/v1/things", "OWNER", 1, 0),
        ("b", "endpoint", "hour", "2026-11-25 01:00:00.000000", "/v1/other", "OWNER", 2, 1),
        ("b", "ip", "day", "2026-11-24 00:00:00.000000", "198.51.100.9", "OWNER", 1, 0),
        ("b", "ip", "day", "2026-11-25 00:00:00.000000", "203.0.113.7", "OWNER", 3, 1),
        ("b", "ip", "hour", "2026-11-24 23:00:00.000000", "198.51.100.9", "OWNER", 1, 0),
        ("b", "ip", "hour", "2026-11-25 00:00:00.000000", "203.0.113.7", "OWNER", 1, 0),
        ("b", "ip", "hour", "2026-11-25 01:00:00.000000", "203.0.113.7", "OWNER", 2, 1),
    ],
    "api_key": [
        ("a", "2026-11-25 01:00:02.000000", "203.0.113.7"),
        ("b", "2026-11-25 01:00:03.000000", "203.0.113.7"),
    ],
}
