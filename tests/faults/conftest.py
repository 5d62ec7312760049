"""Fault tests (marker `faults`): the app behind a TCP proxy the test owns, a Redis of
its own, a SQLite file locked by another process, real servers' workers killed.

They only run when selected (`-m faults`, their own CI step; tests/conftest.py's
OWN_STEP_MARKERS leaves them out otherwise): each stages outages of a
second or two, which the ordinary suite should not wait for.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from flask import Flask
from support.db import USE_PG, base_config, fresh_db
from support.faults import through
from support.proxy import Proxy
from support.servers import PrivateRedis

from app import create_app
from app.extensions import db


@pytest.fixture(autouse=True)
def _no_hang() -> Iterator[None]:
    """A fault test that hangs (an unbounded wait: the very bug) fails after 300 s with
    every thread's stack, instead of stalling CI."""
    import faulthandler

    faulthandler.dump_traceback_later(300, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture
def pg_proxy() -> Iterator[Proxy]:
    if not USE_PG:
        pytest.skip("needs PostgreSQL (DATABASE_URL)")
    url = urlsplit(os.environ["DATABASE_URL"])
    with Proxy(url.hostname or "127.0.0.1", url.port or 5432) as proxy:
        yield proxy


@pytest.fixture
def proxied_app(migrated_db: str, tmp_path: Path, pg_proxy: Proxy) -> Iterator[Flask]:
    """The test's app, with every database connection through the proxy."""
    url = through(fresh_db(migrated_db, tmp_path), pg_proxy.port)
    app = create_app({**base_config(tmp_path, url), "RATELIMIT_STORAGE_URI": "memory://"})
    yield app
    pg_proxy.forward()
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path).start()
    try:
        yield server
    finally:
        server.stop()
