"""A real HTTP receiver on 127.0.0.1 and an app allowed to call it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from support.db import fresh_db, new_app
from support.receiver import Receiver

from app.extensions import db


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def app(migrated_db: str, tmp_path: Path) -> Iterator[Flask]:
    """The suite's app, allowed to reach the test's receiver on loopback."""
    app = new_app(tmp_path, fresh_db(migrated_db, tmp_path), WEBHOOK_ALLOW_PRIVATE=True)
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
