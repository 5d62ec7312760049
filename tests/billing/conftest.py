"""The billing tests' app with small plans (tests/billing/test_billing.py documents the
figures), shared by the billing test modules."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from conftest import _fresh_db, base_config
from flask import Flask
from sqlalchemy import select, update

from app import create_app
from app.extensions import db
from app.models import TierPeriod, User

PLANS = {
    "currency": "EUR",
    "basic": {"included": 10, "base": "1.00", "per_1000": "2.00"},
    "premium": {"included": 100, "base": "10.00", "per_1000": "1.00"},
}


@pytest.fixture
def priced_app(migrated_db: str, tmp_path: Path) -> Iterator[Flask]:
    app = create_app(
        {
            **base_config(tmp_path, _fresh_db(migrated_db, tmp_path)),
            "BILLING_PLANS": json.dumps(PLANS),
        }
    )
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def since(app: Flask, email: str, at: datetime) -> None:
    """Backdate an account to `at` (its creation and its first tier period): accounts
    are billed from the day they were created."""
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == email))
        db.session.execute(
            update(TierPeriod)
            .where(TierPeriod.user_id == user.id, TierPeriod.since == user.created_at)
            .values(since=at)
        )
        user.created_at = at
        db.session.commit()
