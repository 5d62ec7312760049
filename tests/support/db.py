"""The test database: a SQLite file per test copied from a migrated template, or the
PostgreSQL database DATABASE_URL names (one per xdist worker), emptied before each test."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from flask import Flask
from flask_migrate import upgrade
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import OperationalError

from app import create_app
from app.extensions import db

# Under pytest-xdist each worker process ("gw0", "gw1", ...) has a database of its own,
# named after DATABASE_URL's with the worker's id appended, made and dropped by the worker.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
USE_PG = os.environ.get("DATABASE_URL", "").startswith("postgresql")


def _worker_url(url: str) -> str:
    if not (USE_PG and WORKER):
        return url
    parsed = make_url(url)
    return parsed.set(database=f"{parsed.database}_{WORKER}").render_as_string(hide_password=False)


PG_URL = _worker_url(os.environ.get("DATABASE_URL", ""))


def base_config(tmp: Path, url: str) -> dict[str, Any]:
    """Settings of a test app on the database at `url`, its instance files under `tmp`."""
    return {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": url,
        "INSTANCE_PATH": str(tmp / "instance"),
        "SECRET_KEY": "test-secret-key",
        "KEY_PEPPER": "test-pepper",
        # Cheap argon2 parameters: the tests exercise behaviour, not cost.
        "ARGON2_TIME_COST": 1,
        "ARGON2_MEMORY_COST": 8,
        "ARGON2_PARALLELISM": 1,
        "RATELIMIT_STORAGE_URI": os.environ.get("RATELIMIT_STORAGE_URI", "memory://"),
        # Limits live under a prefix of the test's own (and its worker's), so tests and
        # xdist workers sharing one Redis database never spend each other's budget.
        "RATELIMIT_KEY_PREFIX": f"test-{WORKER or 'main'}-{uuid.uuid4().hex}",
        # Direct database edits in tests must show at once; the key cache's own tests
        # (tests/api) and the served tests run with the real default (0.5 s).
        "KEY_CACHE_TTL": 0,
    }


def migrate_template(tmp: Path) -> str:
    """Run the real migrations once; returns the template database's URL."""
    if USE_PG:
        if WORKER:
            _worker_database("CREATE")
        engine = create_engine(PG_URL)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
            # A throw-away database: a commit need not wait for its WAL to reach the disk
            # (only a crash of the server could lose one, and the tests never stop it). On
            # a machine whose disk is busy with other work each commit's flush waits long.
            name = make_url(PG_URL).database
            conn.execute(text(f'ALTER DATABASE "{name}" SET synchronous_commit = off'))
        engine.dispose()
        url = PG_URL
    else:
        url = f"sqlite:///{tmp / 'template.db'}"
    app = create_app(base_config(tmp, url))
    with app.app_context():
        upgrade()
        db.engine.dispose()
    return url


def drop_template() -> None:
    """End of the session: an xdist worker drops the PostgreSQL database it made."""
    if USE_PG and WORKER:
        _worker_database("DROP")


def _worker_database(verb: str) -> None:
    """(Re)create or drop this worker's database, through DATABASE_URL's own database."""
    name = make_url(PG_URL).database
    engine = create_engine(os.environ["DATABASE_URL"], isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        if verb == "CREATE":
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()


def fresh_db(template_url: str, tmp: Path) -> str:
    """An empty migrated database for one test: a copy of the SQLite template in `tmp`,
    or the PostgreSQL database with every table emptied (_EMPTY_PG)."""
    if not USE_PG:
        target = tmp / "keyledger.db"
        shutil.copyfile(template_url.removeprefix("sqlite:///"), target)
        return f"sqlite:///{target}"
    engine = create_engine(template_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(_EMPTY_PG)
    except OperationalError as err:
        raise RuntimeError(
            f"could not empty the test database within {_EMPTY_WAIT}: a connection left "
            f"open by an earlier test holds its rows:\n{_holders(engine)}"
        ) from err
    finally:
        engine.dispose()
    return template_url


# DELETE rather than TRUNCATE: TRUNCATE gives each table new files, synced to disk one by
# one (wait event DataFileImmediateSync), and takes an ACCESS EXCLUSIVE lock that waits
# behind any transaction a leaked connection still holds open: both grow without bound
# on a loaded machine (docs/decisions.md). Foreign keys and the append-only triggers do
# not fire while emptying (replica role: superuser, as in CI), so the order of the tables
# does not matter; sequences start again at 1 as on a new database.
_EMPTY_WAIT = "10s"
_EMPTY_PG = f"""
SET LOCAL lock_timeout = '{_EMPTY_WAIT}';
SET LOCAL session_replication_role = replica;
DO $$
DECLARE t record;
BEGIN
  FOR t IN SELECT tablename FROM pg_tables
           WHERE schemaname = 'public' AND tablename <> 'alembic_version' LOOP
    EXECUTE 'DELETE FROM public.' || quote_ident(t.tablename);
  END LOOP;
  PERFORM setval('public.' || quote_ident(sequencename), 1, false) FROM pg_sequences
    WHERE schemaname = 'public' AND last_value IS NOT NULL;
END $$;
"""


def _holders(engine: Any) -> str:
    """The other sessions on this database, for the error that names the leak."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT pid, state, application_name, left(query, 120) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).all()
    return "\n".join(" | ".join(str(c) for c in row) for row in rows) or "(none seen)"


def new_app(tmp: Path, url: str, **extra: Any) -> Flask:
    """A test app on the database at `url`, with settings of its own."""
    return create_app({**base_config(tmp, url), **extra})
