"""Shared by the fuzz tests: how many examples, a request counter (CI asks for at
least FLOOR requests in all), and the state that rejected input must leave as it was."""

from __future__ import annotations

import os
from typing import Any

from flask import Flask
from sqlalchemy import inspect, text

from app.extensions import db

# Examples per operation and per form; the defaults make ~11,000 requests in all.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "700"))
# Each fuzz test runs as this many tests, each over every SHARDS-th operation or form,
# so that pytest-xdist spreads them over its workers next to the rest of the suite.
SHARDS = 4
# CI's bar at the default EXAMPLES: generated requests over all fuzz tests, summed from
# each test's `fuzz_requests` property by tests/conftest.py (also across xdist workers).
FLOOR = 10_000
SENT = {"requests": 0}


# What no rejected request may change: accounts and keys (failed attempts are audited
# by design, so the audit trail and usage grow; the rows people own must not change).
_WATCHED = ("user", "api_key")
_IGNORED = {"last_used_at", "last_used_ip", "last_login_at", "last_seen_at"}


def state(app: Flask) -> dict[str, list[tuple[Any, ...]]]:
    """Taken before and after every generated request: two SELECTs, the column lists
    read once per app (reflection per call was most of a fuzz request's time)."""
    queries = app.extensions.get("test.fuzz_state")
    with app.app_context(), db.engine.connect() as conn:
        if queries is None:
            queries = {}
            for table in _WATCHED:
                columns = [
                    c["name"] for c in inspect(conn).get_columns(table) if c["name"] not in _IGNORED
                ]
                cols = ", ".join(f'"{c}"' for c in columns)
                queries[table] = text(f'SELECT {cols} FROM "{table}" ORDER BY id')
            app.extensions["test.fuzz_state"] = queries
        return {table: [tuple(r) for r in conn.execute(q).all()] for table, q in queries.items()}


def sent(n: int = 1) -> None:
    SENT["requests"] += n
