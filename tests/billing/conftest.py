"""The billing tests' app with small plans (tests/billing/test_billing.py documents the
figures), shared by the billing test modules."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from support.db import base_config, fresh_db

from app import create_app
from app.extensions import db

PLANS = {
    "currency": "EUR",
    "basic": {"included": 10, "base": "1.00", "per_1000": "2.00"},
    "premium": {"included": 100, "base": "10.00", "per_1000": "1.00"},
}


@pytest.fixture
def priced_app(migrated_db: str, tmp_path: Path) -> Iterator[Flask]:
    app = create_app(
        {
            **base_config(tmp_path, fresh_db(migrated_db, tmp_path)),
            "BILLING_PLANS": json.dumps(PLANS),
        }
    )
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
