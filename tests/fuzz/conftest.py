"""The fuzz tests' app: limits that never stop the generated traffic (their helpers
are in support/fuzz.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from support.db import base_config, fresh_db
from support.fuzz import SENT

from app import create_app
from app.extensions import db


@pytest.fixture(autouse=True)
def _count_requests(record_property: Callable[[str, object], None]) -> Iterator[None]:
    """Each test's generated requests, as a property tests/conftest.py sums."""
    before = SENT["requests"]
    yield
    record_property("fuzz_requests", SENT["requests"] - before)


@pytest.fixture
def fuzz_app(migrated_db: str, tmp_path: Path) -> Iterator[Flask]:
    config = base_config(tmp_path, fresh_db(migrated_db, tmp_path))
    config.update(
        TIER_RATE_LIMITS={"basic": 10**6, "premium": 10**6, "enterprise": 10**6},
        FAILED_VALIDATION_LIMIT="1000000/minute",
        LOGIN_RATE_LIMIT="1000000/minute",
        WTF_CSRF_ENABLED=True,
    )
    app = create_app(config)
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
