"""Bounded waits on the database: a dependency that stops answering costs a request at
most DATABASE_TIMEOUT, then the request answers 503 (docs/reliability.md).

libpq's own bounds do not cover every fault. connect_timeout has a 2 s floor;
statement_timeout needs a server that answers; TCP keepalives and tcp_user_timeout end
a connection whose packets vanish, but a peer that accepts and never answers (a wedged
server or proxy, whose kernel still acknowledges) is only caught by the client giving up.
So psycopg's connection class is given a deadline on each wait: on connecting
(DATABASE_CONNECT_TIMEOUT) and on every statement (DATABASE_TIMEOUT). A connection whose
wait expired is closed (its protocol state is unknown) and the pool replaces it.

The flask CLI is exempt: migrations, `audit verify` and exports may rightly run long, and
an operator at a terminal can interrupt them. A thread running a click command (the
CLI's main thread) opens its connections without the deadline or statement_timeout.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from functools import lru_cache
from typing import Any

import click


class DatabaseTimeout(TimeoutError):
    """The database did not answer within DATABASE_TIMEOUT. Not a DBAPI error on purpose:
    SQLAlchemy's pre-ping then drops this connection and raises, instead of reconnecting
    at once into the same silence (which would double the wait)."""


def in_cli_command() -> bool:
    """True in the thread that runs a `flask ...` command."""
    return click.get_current_context(silent=True) is not None


def _until(gen: Generator[Any, Any, Any], deadline: float, on_expiry: Any) -> Any:
    """Drive psycopg's protocol generator, giving up once `deadline` (monotonic) passed.

    psycopg's wait loop wakes at least every 0.1 s and sends the generator what the
    socket is ready for (nothing, on a silent peer), so the check runs on every wake.
    """
    try:
        request = next(gen)
    except StopIteration as done:
        return done.value
    while True:
        ready = yield request
        if time.monotonic() >= deadline:
            gen.close()
            on_expiry()
        try:
            request = gen.send(ready)
        except StopIteration as done:
            return done.value


@lru_cache(maxsize=8)
def connection_class(connect_s: float, statement_s: float) -> type:
    """A psycopg Connection whose connects and statements end after the given seconds."""
    import psycopg

    class DeadlineConnection(psycopg.Connection):  # type: ignore[type-arg]
        @classmethod
        def _connect_gen(cls, conninfo: str = "") -> Any:
            def expired() -> None:
                raise psycopg.errors.ConnectionTimeout(
                    f"no connection to the database within {connect_s:g} s"
                )

            return _until(super()._connect_gen(conninfo), time.monotonic() + connect_s, expired)

        def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
            def expired() -> None:
                self.pgconn.finish()  # mid-protocol: unusable, and the pool knows it
                raise DatabaseTimeout(f"the database did not answer within {statement_s:g} s")

            return super().wait(
                _until(gen, time.monotonic() + statement_s, expired), interval, timeout
            )

    return DeadlineConnection


def postgresql_connect_args(config: dict[str, Any]) -> dict[str, Any]:
    """libpq settings for every connection: TCP keepalives and tcp_user_timeout end a
    connection whose packets are dropped (also while it idles in the pool)."""
    statement_ms = int(1000 * float(config["DATABASE_TIMEOUT"]))
    return {
        "connect_timeout": 2,  # libpq's floor; the deadline above is the real bound
        "keepalives": 1,
        "keepalives_idle": 5,
        "keepalives_interval": 1,
        "keepalives_count": 3,
        "tcp_user_timeout": statement_ms,
    }


def install(engine: Any, config: dict[str, Any]) -> None:
    """Give a PostgreSQL engine the deadlines (outside CLI commands) and statement_timeout.

    statement_timeout sits a little under the client's deadline, so that a slow statement
    on a live server ends with the server's clear error rather than our give-up.
    """
    from sqlalchemy import event

    if engine.dialect.name == "sqlite":
        install_sqlite(engine, config)
    if engine.dialect.name != "postgresql":
        return
    connect_s = float(config["DATABASE_CONNECT_TIMEOUT"])
    statement_s = float(config["DATABASE_TIMEOUT"])
    server_ms = max(1, int(900 * statement_s))

    @event.listens_for(engine, "do_connect")
    def _connect(dialect: Any, conn_rec: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
        if in_cli_command():
            return None  # SQLAlchemy's own connect, unbounded
        options = cparams.get("options", "")
        cparams["options"] = (
            f"{options} -c statement_timeout={server_ms} -c lock_timeout={server_ms}"
        ).strip()
        return connection_class(connect_s, statement_s).connect(*cargs, **cparams)


def install_sqlite(engine: Any, config: dict[str, Any]) -> None:
    """SQLite's wait for another writer's lock: DATABASE_TIMEOUT, then 'database is locked'
    (a 503); the CLI waits up to a minute."""
    from sqlalchemy import event

    serving_ms = max(1, int(1000 * float(config["DATABASE_TIMEOUT"])))

    @event.listens_for(engine, "connect")
    def _busy_timeout(dbapi_connection: Any, connection_record: Any) -> None:
        cur = dbapi_connection.cursor()
        cur.execute(f"PRAGMA busy_timeout={60_000 if in_cli_command() else serving_ms}")
        cur.close()
