"""Fault tests (marker `faults`): the app behind a TCP proxy the test owns, a Redis of
its own, a SQLite file locked by another process, real gunicorn servers killed.

They only run when selected (`-m faults`, their own CI step; tests/conftest.py's
OWN_STEP_MARKERS leaves them out otherwise): each stages outages of a
second or two, which the ordinary suite should not wait for.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from conftest import USE_PG, _fresh_db, base_config
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from app.extensions import db

from .proxy import Proxy

# A fault must be answered within this (issue 13).
ANSWER_WITHIN = 2.0


@pytest.fixture(autouse=True)
def _no_hang() -> Iterator[None]:
    """A fault test that hangs (an unbounded wait: the very bug) fails after 300 s with
    every thread's stack, instead of stalling CI."""
    import faulthandler

    faulthandler.dump_traceback_later(300, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def pg_proxy() -> Iterator[Proxy]:
    if not USE_PG:
        pytest.skip("needs PostgreSQL (DATABASE_URL)")
    url = urlsplit(os.environ["DATABASE_URL"])
    with Proxy(url.hostname or "127.0.0.1", url.port or 5432) as proxy:
        yield proxy


def through(url: str, port: int) -> str:
    """The database URL with the proxy's address in place of the server's."""
    parts = urlsplit(url)
    auth = parts.netloc.rpartition("@")[0]
    netloc = f"{auth}@127.0.0.1:{port}" if auth else f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


@pytest.fixture
def proxied_app(migrated_db: str, tmp_path: Path, pg_proxy: Proxy) -> Iterator[Flask]:
    """The test's app, with every database connection through the proxy."""
    url = through(_fresh_db(migrated_db, tmp_path), pg_proxy.port)
    app = create_app({**base_config(tmp_path, url), "RATELIMIT_STORAGE_URI": "memory://"})
    yield app
    pg_proxy.forward()
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


class PrivateRedis:
    """A redis-server on a free port of its own, which a test may pause, kill and
    start again on the same port (the shared Redis is never touched)."""

    def __init__(self, tmp: Path) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.skip("needs redis-server")
        self.exe = exe
        self.tmp = tmp
        self.port = free_port()
        self.uri = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PrivateRedis:
        import redis

        self.proc = subprocess.Popen(
            [
                *(self.exe, "--bind", "127.0.0.1", "--port", str(self.port)),
                *("--save", "", "--appendonly", "no", "--dir", str(self.tmp)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(self.uri, socket_timeout=1).ping()
                return self
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def client(self) -> Any:
        import redis

        return redis.Redis.from_url(self.uri, socket_timeout=2)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path).start()
    try:
        yield server
    finally:
        server.stop()


def wait_until(check: Callable[[], bool], within: float, step: float = 0.05) -> float:
    """Seconds until check() held; fails after `within`."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > within:
            raise AssertionError(f"not recovered within {within} s")
        time.sleep(step)
    return time.monotonic() - started


def validate(client: FlaskClient, key: str) -> Any:
    return client.post(
        "/api/v1/keys/validate",
        json={"key": key, "request": {"method": "GET", "path": "/v1/faults"}},
    )
