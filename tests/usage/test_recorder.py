"""The recorder writes queued events, roll-ups and last use when it flushes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import Flask
from sqlalchemy import select
from support.rows import count_rows, written_audit
from support.usage import Key

from app.extensions import db
from app.models import ApiKey, UsageLatencyBin, UsageRecord, UsageRollup
from app.usage import recorder


def rollup(app: Flask, key_id: int, granularity: str, bucket: datetime) -> UsageRollup | None:
    with app.app_context():
        row = db.session.get(UsageRollup, (key_id, granularity, bucket))
        if row is not None:
            db.session.expunge(row)
        return row


def test_nothing_is_written_until_flush_then_everything(app: Flask, key: Key) -> None:
    at = datetime(2026, 11, 25, 10, 15, 30, tzinfo=UTC)
    rec = recorder(app)
    rec.record(key.event(status=200, ms=4.0, at=at))
    rec.record(key.event(status=201, ms=6.0, at=at + timedelta(seconds=10)))
    rec.record(key.event(status=404, ms=2.0, at=at + timedelta(seconds=20)))
    rec.record(key.event(status=503, ms=900.0, at=at + timedelta(minutes=1)))
    assert count_rows(app, "usage_event") == 0

    rec.flush()

    assert count_rows(app, "usage_event") == 4
    minute = rollup(app, key.id, "minute", at.replace(second=0))
    assert (minute.count, minute.status_2xx, minute.status_4xx, minute.status_5xx) == (3, 2, 1, 0)
    assert minute.latency_sum_ms == 12.0
    hour = rollup(app, key.id, "hour", at.replace(minute=0, second=0))
    assert (hour.count, hour.status_2xx, hour.status_4xx, hour.status_5xx) == (4, 2, 1, 1)
    with app.app_context():
        bins = db.session.scalars(
            select(UsageLatencyBin.count).where(
                UsageLatencyBin.key_id == key.id, UsageLatencyBin.granularity == "hour"
            )
        ).all()
        assert sum(bins) == 4
        stored = db.session.get(ApiKey, key.id)
        assert stored.last_used_at == at + timedelta(minutes=1)
        assert stored.last_used_ip == "203.0.113.7"
        raw = db.session.scalars(select(UsageRecord).order_by(UsageRecord.at)).all()
        assert [r.status for r in raw] == [200, 201, 404, 503]
        assert raw[0].endpoint == "/v1/things" and raw[0].method == "GET"


def test_a_second_flush_adds_to_the_same_rollup(app: Flask, key: Key) -> None:
    at = datetime(2026, 11, 25, 10, 15, tzinfo=UTC)
    rec = recorder(app)
    rec.record(key.event(at=at))
    rec.flush()
    rec.record(key.event(at=at + timedelta(seconds=5), status=500))
    rec.flush()
    minute = rollup(app, key.id, "minute", at)
    assert (minute.count, minute.status_2xx, minute.status_5xx) == (2, 1, 1)


def test_audit_events_ride_the_batch(app: Flask, key: Key) -> None:
    rec = recorder(app)
    rec.flush()
    before = written_audit(app, "key.validated")
    rec.audit("key.validated", actor=f"key:{key.public_id}", target=f"key:{key.public_id}")
    assert written_audit(app, "key.validated") == before
    rec.flush()
    assert written_audit(app, "key.validated") == before + 1


def test_a_flush_past_the_database_deadline_keeps_the_whole_batch(
    app: Flask, key: Key, tmp_path
) -> None:
    """Issue 22: a statement past DATABASE_TIMEOUT raises DatabaseTimeout, which the
    recorder did not take for "database unavailable": the batch was retried item by
    item and the events of answered requests were dropped. Here every statement is past
    a deadline far below a round trip: the batch must stay queued, whole."""
    import pytest
    from sqlalchemy import func
    from support.db import USE_PG, base_config

    from app import create_app

    if not USE_PG:
        pytest.skip("the statement deadline is PostgreSQL's (app/deadlines.py)")
    conf = base_config(tmp_path, app.config["SQLALCHEMY_DATABASE_URI"])
    slow = create_app({**conf, "DATABASE_TIMEOUT": 0.00005})
    rec = recorder(slow)
    at = datetime(2026, 11, 25, 10, 15, 30, tzinfo=UTC)
    for i in range(5):
        rec.record(key.event(at=at + timedelta(seconds=i)))
    rec.flush()
    assert rec.pending() == 5, "an answered request's usage was dropped"
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(UsageRecord)) == 0
    with slow.app_context():
        db.engine.dispose()
