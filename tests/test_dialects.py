"""app/dialects.py: the PostgreSQL/SQLite differences, asked of the real test database."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from app import dialects
from app.extensions import db
from app.models import User


def test_only_the_two_supported_databases() -> None:
    assert dialects.name_of("sqlite") == "sqlite"
    with pytest.raises(RuntimeError, match="PostgreSQL or SQLite, not mysql"):
        dialects.name_of("mysql")
    with pytest.raises(RuntimeError):
        dialects.insert("mysql", User)


def test_day_text_and_insert_ignoring_conflicts_on_this_database(app) -> None:
    late = datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC)
    with app.app_context():
        row = {"email": "day@example.com", "password_hash": "x", "created_at": late}
        stmt = dialects.insert(db.session, User).on_conflict_do_nothing()
        db.session.execute(stmt, row)
        db.session.execute(stmt, row)  # the same email again: ignored, not an error
        db.session.commit()
        day = dialects.utc_day_text(db.session, User.created_at)
        days = db.session.scalars(select(day).where(User.email == "day@example.com")).all()
    assert days == ["2026-11-30"]
