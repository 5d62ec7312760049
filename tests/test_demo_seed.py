"""`flask demo seed`: accounts and keys through the domain functions, traffic through
the usage recorder (raw events and every roll-up agree), security events to look at."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import text

from app.extensions import db


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
