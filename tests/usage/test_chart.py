"""The usage chart on the key page: data for the owner only, never from raw events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import Flask
from sqlalchemy import text
from support.rows import audit_events
from support.usage import Key
from support.web import Portal

from app.extensions import db
from app.usage import recorder


def test_key_page_has_a_usage_section_wired_without_inline_script(user: Portal, key: Key) -> None:
    page = user.client.get(f"/keys/{key.public_id}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert 'data-chart="series"' in html
    assert f'data-usage-url="/keys/{key.public_id}/usage.json"' in html
    assert "/static/vendor/chart.js/chart.umd.min.js" in html
    assert "/static/js/usage-chart.js" in html
    assert "<script>" not in html  # the CSP forbids inline scripts
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert user.client.get("/static/vendor/chart.js/chart.umd.min.js").status_code == 200
    assert user.client.get("/static/js/usage-chart.js").status_code == 200


def test_empty_key_has_zero_buckets_and_a_total_of_nothing(user: Portal, key: Key) -> None:
    expected = (
        ("hour", 60, "minute"),
        ("day", 24, "hour"),
        ("week", 168, "hour"),
        ("month", 30, "day"),
    )
    for range_name, n, granularity in expected:
        resp = user.client.get(f"/keys/{key.public_id}/usage.json?range={range_name}")
        assert resp.status_code == 200
        data = resp.get_json()
        assert data["granularity"] == granularity
        assert len(data["buckets"]) == n
        assert data["total"]["count"] == 0
        assert data["total"]["latency_p95_ms"] is None


def test_owner_sees_their_usage_by_status_class(app: Flask, user: Portal, key: Key) -> None:
    now = datetime.now(UTC)
    rec = recorder(app)
    for status, ms in ((200, 3.0), (200, 4.0), (204, 5.0), (401, 1.0), (500, 80.0)):
        rec.record(key.event(status=status, ms=ms, at=now))
    rec.record(key.event(status=200, ms=3.0, at=now - timedelta(days=3)))
    rec.flush()

    hour = user.client.get(f"/keys/{key.public_id}/usage.json?range=hour").get_json()
    last = hour["buckets"][-1]
    assert last["count"] == 5
    assert last["outcome"] == {
        "2xx": 3,
        "3xx": 0,
        "4xx": 0,
        "401/403": 1,
        "429": 0,
        "5xx": 1,
        "other": 0,
    }
    assert last["latency_avg_ms"] == round(93.0 / 5, 3)
    # p95 of five requests is the slowest (80 ms), read from a bin at most 19 % high.
    assert 80.0 <= last["latency_p95_ms"] <= 80.0 * 2**0.25
    assert hour["total"]["count"] == 5

    month = user.client.get(f"/keys/{key.public_id}/usage.json?range=month").get_json()
    assert month["total"]["count"] == 6
    assert sum(b["count"] for b in month["buckets"]) == 6
    assert month["buckets"][-1]["count"] == 5


def test_chart_does_not_read_raw_events(app: Flask, user: Portal, key: Key) -> None:
    rec = recorder(app)
    rec.record(key.event())
    rec.flush()
    with app.app_context():
        db.session.execute(text("DELETE FROM usage_event"))
        db.session.commit()
    data = user.client.get(f"/keys/{key.public_id}/usage.json?range=day").get_json()
    assert data["total"]["count"] == 1


def test_another_user_gets_404_and_the_attempt_is_audited(
    app: Flask, key: Key, other: Portal
) -> None:
    rec = recorder(app)
    rec.record(key.event())
    rec.flush()
    before = len(audit_events(app, "access.unauthorized"))
    resp = other.client.get(f"/keys/{key.public_id}/usage.json?range=day")
    assert resp.status_code == 404
    assert b'"count"' not in resp.data
    after = audit_events(app, "access.unauthorized", target=f"key:{key.public_id}")
    assert len(after) == before + 1


def test_logged_out_visitor_is_sent_to_login(app: Flask, key: Key) -> None:
    resp = app.test_client().get(f"/keys/{key.public_id}/usage.json")
    assert resp.status_code == 302
    assert "/login" in resp.headers["Location"]


def test_unknown_range_is_a_clear_400(user: Portal, key: Key) -> None:
    resp = user.client.get(f"/keys/{key.public_id}/usage.json?range=decade")
    assert resp.status_code == 400
    assert "range must be one of" in resp.get_json()["message"]
