"""A key is "expiring" in the last quarter of its lifetime, at most KEY_EXPIRING_DAYS (7)
before its end (issue 18: a new 7-day key was "expiring" the moment it was made)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import Flask
from sqlalchemy import text
from support.web import Portal, public_id_of

from app.extensions import db


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
