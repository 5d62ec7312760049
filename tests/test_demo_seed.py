"""`flask demo seed`: accounts and keys through the domain functions, traffic through
the usage recorder (raw events and every roll-up agree), security events to look at."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Flask
from sqlalchemy import func, select, text

from app import billing
from app.billing import snapshot
from app.extensions import db
from app.models import UsageRollup


def _one(app: Flask, sql: str) -> int:
    with app.app_context():
        return int(db.session.execute(text(sql)).scalar_one() or 0)


def test_demo_seed_fills_a_database_through_the_recording_path(app: Flask) -> None:
    args = ["demo", "seed", "--users", "5", "--keys", "12", "--events", "4000", "--days", "3"]
    result = app.test_cli_runner().invoke(args=args)
    assert result.exit_code == 0, result.output
    assert (
        "Requests" in result.output and "seeded 5 accounts, 12 keys, 4000 requests" in result.output
    )
    assert _one(app, "SELECT COUNT(*) FROM \"user\" WHERE email LIKE 'demo-%'") == 5
    assert _one(app, "SELECT COUNT(*) FROM api_key") == 12 + _one(
        app, "SELECT COUNT(*) FROM api_key WHERE rotated_from_id IS NOT NULL"
    )
    assert _one(app, "SELECT COUNT(*) FROM usage_event") == 4000
    for granularity in ("minute", "hour", "day"):
        total = _one(
            app, f"SELECT SUM(count) FROM usage_rollup WHERE granularity = '{granularity}'"
        )
        assert total == 4000, granularity
    assert _one(app, "SELECT SUM(status_429) FROM usage_rollup WHERE granularity = 'day'") == _one(
        app, "SELECT COUNT(*) FROM usage_event WHERE status = 429"
    )
    assert _one(app, "SELECT COUNT(*) FROM usage_rollup WHERE tier IS NULL") == 0
    assert _one(app, "SELECT COUNT(*) FROM audit_event WHERE action = 'key.validation_failed'") > 0
    assert _one(app, "SELECT COUNT(*) FROM audit_event WHERE action = 'user.tier_changed'") >= 1
    # Accounts are reused by a second run; the keys and traffic add up.
    again = app.test_cli_runner().invoke(args=[*args[:4], "--keys", "2", "--events", "10"])
    assert again.exit_code == 0, again.output
    assert _one(app, "SELECT COUNT(*) FROM \"user\" WHERE email LIKE 'demo-%'") == 5
    assert _one(app, "SELECT COUNT(*) FROM usage_event") == 4010
    # The seed ends by writing the billing snapshot of every closed day (the second run
    # reopened the days it wrote into, and wrote them again).
    assert "billing snapshot:" in again.output
    now = datetime.now(UTC)
    with app.app_context():
        first = db.session.scalar(
            select(func.min(UsageRollup.bucket)).where(UsageRollup.granularity == "hour")
        )
    first_day = snapshot.day_of(first)
    closed = (snapshot.closed_through(now) - first_day).days
    assert _one(app, "SELECT COUNT(*) FROM billing_day_closed") == closed
    with app.app_context():
        start, end = first_day, snapshot.closed_through(now)
        read = billing.lines(db.session, billing.plans(app), start, end)
        summed = billing.lines(db.session, billing.plans(app), start, end, now=start)
    assert read == summed and sum(x.requests for x in read) > 0
