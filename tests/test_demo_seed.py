"""`flask demo seed`: accounts and keys through the domain functions, traffic through
the usage recorder (raw events and every roll-up agree), security events to look at."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from flask import Flask
from sqlalchemy import func, select, text
from sqlalchemy.orm import aliased

from app import billing
from app.billing import snapshot
from app.extensions import db
from app.models import ApiKey, UsageRollup


def _one(app: Flask, sql: str) -> int:
    with app.app_context():
        return int(db.session.execute(text(sql)).scalar_one() or 0)


def test_demo_seed_fills_a_database_through_the_recording_path(app: Flask) -> None:
    args = ["demo", "seed", "--users", "5", "--keys", "12", "--events", "4000", "--days", "3"]
    result = app.test_cli_runner().invoke(args=args)
    assert result.exit_code == 0, result.output
    assert "seeded 5 accounts, 12 keys, 4000 requests" in result.output
    # Without a terminal, progress is a line at every tenth of each stage.
    assert "Keys: 12/12 (100 %)" in result.output
    assert "Requests: 400/4000 (10 %)" in result.output
    assert "Requests: 4000/4000 (100 %)" in result.output
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
    before = datetime.now(UTC)
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
    # The seed closed the days before its own moment: one more if midnight passed since.
    closed = {(snapshot.closed_through(t) - first_day).days for t in (before, now)}
    assert _one(app, "SELECT COUNT(*) FROM billing_day_closed") in closed
    with app.app_context():
        start, end = first_day, snapshot.closed_through(now)
        read = billing.lines(db.session, start, end)
        summed = billing.lines(db.session, start, end, now=start)
    assert read == summed and sum(x.requests for x in read) > 0


def _picked(app: Flask) -> tuple[list[str], list[str]]:
    """Names of the keys the seed revoked and the keys it rotated (not their successors)."""
    with app.app_context():
        revoked = db.session.scalars(
            select(ApiKey.name).where(ApiKey.revoked_at.is_not(None)).order_by(ApiKey.name)
        ).all()
        successor = aliased(ApiKey)
        rotated = db.session.scalars(
            select(ApiKey.name)
            .join(successor, successor.rotated_from_id == ApiKey.id)
            .order_by(ApiKey.name)
        ).all()
    return list(revoked), list(rotated)


def test_demo_seed_run_again_and_again_picks_only_live_keys(app: Flask) -> None:
    """A person runs the seed a second and third time: each run revokes and rotates keys
    that are still live, never one in its grace period after an earlier rotation."""
    args = ["demo", "seed", "--users", "3", "--keys", "3", "--events", "0", "--days", "3"]
    for run in range(3):
        result = app.test_cli_runner().invoke(args=args)
        assert result.exit_code == 0, (run, repr(result.exception), result.output)
    assert _one(app, "SELECT COUNT(*) FROM audit_event WHERE action = 'key.rotated'") == 3
    assert _one(app, "SELECT COUNT(*) FROM audit_event WHERE action = 'key.revoked'") == 3
    # No key has two successors, and none was revoked after it had been rotated.
    assert _one(app, "SELECT COUNT(DISTINCT rotated_from_id) FROM api_key") == 3
    assert (
        _one(
            app,
            "SELECT COUNT(*) FROM api_key k WHERE k.revoked_at IS NOT NULL AND EXISTS "
            "(SELECT 1 FROM api_key s WHERE s.rotated_from_id = k.id)",
        )
        == 0
    )


def test_demo_seed_picks_the_same_keys_whatever_the_traffic(
    fresh_app: Callable[[], Flask],
) -> None:
    """The traffic follows the clock (busy afternoons, quiet weekends), so how much
    randomness it draws depends on the hour the seed runs; which keys the seed revokes
    and rotates must not. Two traffic sizes stand in for two hours of the day."""
    picks = []
    for events in ("0", "3000"):
        app = fresh_app()
        args = ["demo", "seed", "--users", "5", "--keys", "60", "--events", events, "--days", "3"]
        result = app.test_cli_runner().invoke(args=args)
        assert result.exit_code == 0, result.output
        picks.append(_picked(app))
    assert picks[0] == picks[1]
    assert all(picks[0])
