"""`flask usage prune`: raw events past retention go, billing roll-ups stay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import Flask
from sqlalchemy import func, select
from support.rows import count_rows
from support.usage import Key

from app.extensions import db
from app.models import UsageRecord, UsageRollup
from app.usage import recorder


def test_prune_deletes_old_raw_events_and_keeps_hour_rollups(app: Flask, key: Key) -> None:
    now = datetime.now(UTC)
    rec = recorder(app)
    for days in (0, 1, 29, 31, 45, 100):
        rec.record(key.event(at=now - timedelta(days=days)))
    rec.flush()
    assert count_rows(app, "usage_event") == 6

    result = app.test_cli_runner().invoke(args=["usage", "prune", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "would delete 3 raw usage events" in result.output
    assert count_rows(app, "usage_event") == 6

    result = app.test_cli_runner().invoke(args=["usage", "prune"])
    assert result.exit_code == 0, result.output
    assert "deleted 3 raw usage events" in result.output
    assert "1 minute roll-ups" in result.output  # the 100-day-old one (default 90 days)
    with app.app_context():
        ages = sorted((now - at).days for at in db.session.scalars(select(UsageRecord.at)).all())
        assert ages == [0, 1, 29]
        hours = db.session.scalar(
            select(func.sum(UsageRollup.count)).where(UsageRollup.granularity == "hour")
        )
        assert hours == 6  # billing keeps everything


def test_prune_honours_days_option_and_refuses_zero(app: Flask, key: Key) -> None:
    now = datetime.now(UTC)
    rec = recorder(app)
    for days in (0, 2, 5):
        rec.record(key.event(at=now - timedelta(days=days)))
    rec.flush()
    result = app.test_cli_runner().invoke(args=["usage", "prune", "--days", "0"])
    assert result.exit_code != 0
    assert count_rows(app, "usage_event") == 3
    result = app.test_cli_runner().invoke(args=["usage", "prune", "--days", "1"])
    assert result.exit_code == 0, result.output
    assert count_rows(app, "usage_event") == 1
