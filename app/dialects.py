"""What differs between PostgreSQL and SQLite, written once.

Why: Keyledger runs on both (SQLite by default, PostgreSQL in production), and a
branch on the dialect copied into each module drifts: one copy forgets the UTC
conversion, another the error for a third database. Modules ask here instead.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, func
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, scoped_session

SUPPORTED = ("postgresql", "sqlite")
Bind = Session | scoped_session[Session] | Connection | Engine | str


def name_of(bind: Bind) -> str:
    """'postgresql' or 'sqlite' for a session, connection, engine or dialect name;
    RuntimeError for any other database (the app runs on these two only)."""
    if isinstance(bind, str):
        name = bind
    elif hasattr(bind, "get_bind"):  # a Session, or Flask-SQLAlchemy's scoped db.session
        name = bind.get_bind().dialect.name
    else:
        name = bind.dialect.name
    if name not in SUPPORTED:
        raise RuntimeError(f"Keyledger runs on PostgreSQL or SQLite, not {name}")
    return name


def insert(bind: Bind, table: Any) -> Any:
    """The dialect's INSERT for `table` (a model or a Table), which has
    on_conflict_do_nothing / on_conflict_do_update and `excluded`."""
    table = getattr(table, "__table__", table)
    if name_of(bind) == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def utc_day_text(bind: Bind, column: Any) -> ColumnElement[str]:
    """'YYYY-MM-DD' (UTC) of a timestamp column, computed by the database."""
    if name_of(bind) == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD")
    # SQLite stores 'YYYY-MM-DD HH:MM:SS[.ffffff]' in UTC (app/models/_types.py).
    return func.substr(column, 1, 10)
