"""Fixtures for the API tests: users and keys made with the domain services, and a
the README's server serving the same database for the multi-worker tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from support.keys import Keys
from support.servers import AppServer, PrivateRedis

from app import create_app
from app.extensions import db


@pytest.fixture
def keys(app: Flask) -> Keys:
    return Keys(app)


# What a second app on the same database needs from the test's own app.
_SHARED = (
    "TESTING",
    "SQLALCHEMY_DATABASE_URI",
    "INSTANCE_PATH",
    "SECRET_KEY",
    "KEY_PEPPER",
    "AUDIT_SIGNING_KEY",
    "ARGON2_TIME_COST",
    "ARGON2_MEMORY_COST",
    "ARGON2_PARALLELISM",
    "RATELIMIT_STORAGE_URI",
    "RATELIMIT_KEY_PREFIX",
)


@pytest.fixture
def make_app(app: Flask) -> Iterator[Any]:
    """make_app(**overrides): another app on the test's database with other settings
    (its own Limiter, app/limiter.py: its limit storage is its own)."""
    made: list[Flask] = []

    def make(**overrides: Any) -> Flask:
        variant = create_app({**{k: app.config[k] for k in _SHARED}, **overrides})
        made.append(variant)
        return variant

    yield make
    for variant in made:
        with variant.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[str]:
    """A Redis server of the test's own: pausing it stalls no other test's Redis."""
    server = PrivateRedis(tmp_path).start()
    try:
        yield server.uri
    finally:
        server.stop()


@pytest.fixture
def served(app: Flask, tmp_path: Path) -> Iterator[Any]:
    """Start servers with served(workers=N, **env); all are stopped after the test."""
    started: list[AppServer] = []

    def start(workers: int = 2, **env: str | None) -> AppServer:
        server = AppServer(app, tmp_path, workers, **env).__enter__()
        started.append(server)
        return server

    yield start
    for server in started:
        server.__exit__(None, None, None)
