"""A key is "expiring" in the last quarter of its lifetime, at most KEY_EXPIRING_DAYS (7)
before its end (issue 18: a new 7-day key was "expiring" the moment it was made)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from flask import Flask
from sqlalchemy import select, text
from support.web import Portal, public_id_of

from app.extensions import db
from app.keys.lifecycle import KeyPolicy, expiring_window, status, status_counts
from app.models import ApiKey, User


def _badge(user: Portal, pid: str) -> str:
    html = user.client.get(f"/keys/{pid}").get_data(as_text=True)
    return html.split('<span class="badge status-', 1)[1].split('"', 1)[0]


def _lifetime(app: Flask, pid: str, made_ago: timedelta, left: timedelta) -> None:
    now = datetime.now(UTC)
    with app.app_context():
        db.session.execute(
            text("UPDATE api_key SET created_at = :c, expires_at = :e WHERE public_id = :p"),
            {"c": now - made_ago, "e": now + left, "p": pid},
        )
        db.session.commit()


def test_a_new_short_key_is_active_and_expiring_only_near_its_end(app: Flask, user: Portal) -> None:
    _, week = user.create_key("week", days=7)
    _, quarter = user.create_key("quarter", days=90)
    week_id, quarter_id = public_id_of(week), public_id_of(quarter)
    assert _badge(user, week_id) == "active"
    summary = user.client.get("/keys").get_data(as_text=True).split("</ul>", 1)[0]
    assert "<strong>2</strong> active" in summary and "dot-expiring" not in summary
    dashboard = user.client.get("/dashboard").get_data(as_text=True)
    assert "No key is close to its end." in dashboard

    _lifetime(app, week_id, timedelta(days=5), timedelta(days=2))  # 2 of 7 days left
    assert _badge(user, week_id) == "active"  # the window is 42 hours
    _lifetime(app, week_id, timedelta(days=5, hours=7), timedelta(hours=41))
    assert _badge(user, week_id) == "expiring"

    _lifetime(app, quarter_id, timedelta(days=82), timedelta(days=8))
    assert _badge(user, quarter_id) == "active"  # the window is at most 7 days
    _lifetime(app, quarter_id, timedelta(days=83, hours=1), timedelta(days=6, hours=23))
    assert _badge(user, quarter_id) == "expiring"
    dashboard = user.client.get("/dashboard").get_data(as_text=True)
    expiring = dashboard.split('id="expiring-title"', 1)[1].split("</section>", 1)[0]
    assert f"{week_id}" in expiring and f"{quarter_id}" in expiring


def test_the_status_counts_are_the_badges_at_every_edge_of_the_window(
    app: Flask, user: Portal
) -> None:
    """lifecycle.status_counts (the /keys summary) and status() (each badge) once
    disagreed: the counts used a fixed KEY_EXPIRING_DAYS window and called a new 7-day
    key expiring. Both now ask lifecycle.phase; this grid sits on each edge of it."""
    now = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    second = timedelta(seconds=1)
    with app.app_context():
        policy = KeyPolicy.from_config(app.config)
        owner = db.session.scalar(select(User.id).where(User.email == "alice@example.com"))
        spans = []
        for days in (1, 2, 7, 28, 30, 90, 365):
            life = timedelta(days=days)
            window = expiring_window(now - life, now, policy.expiring_days)
            widest = timedelta(days=policy.expiring_days)
            for left in (life, window + second, window, window - second, widest, widest + second):
                if timedelta(0) < left <= life:
                    spans.append((life, left, None))
        spans += [(timedelta(days=7), timedelta(0), None), (timedelta(days=7), -second, None)]
        spans += [(timedelta(days=7), timedelta(days=7), now)]  # revoked at once
        for i, (life, left, revoked) in enumerate(spans):
            expires = now + left
            db.session.add(
                ApiKey(
                    public_id=f"edge{i:04d}",
                    prefix="klk",
                    secret_hash=bytes(32),
                    user_id=owner,
                    name=f"edge {i}",
                    scopes=[],
                    created_at=expires - life,
                    expires_at=expires,
                    revoked_at=revoked,
                )
            )
        db.session.commit()
        keys = db.session.scalars(select(ApiKey).where(ApiKey.user_id == owner)).all()
        badges = Counter(status(k, policy, now) for k in keys)
        assert status_counts(db.session, owner, policy, now) == dict(badges)
        assert set(badges) == {"active", "expiring", "expired", "revoked"}
        # The case that once disagreed: a whole 7-day lifetime left is active everywhere.
        # (Not the key revoked at once: it has the same dates, and the database returns
        # the two in any order.)
        week = next(
            k
            for k in keys
            if k.revoked_at is None
            and k.expires_at - k.created_at == k.expires_at - now == timedelta(days=7)
        )
        assert status(week, policy, now) == "active"
