"""app/times.py: the one place times are shown, read, floored and counted in months."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from app import times

AT = datetime(2026, 12, 31, 23, 59, 58, 123456, tzinfo=UTC)


def test_every_display_is_utc_and_24_hour() -> None:
    paris = AT.astimezone(timezone(timedelta(hours=1)))  # the same instant, another zone
    assert times.display(paris) == "2026-12-31 23:59"
    assert times.display(AT, "date") == "2026-12-31"
    assert times.display(AT, "time") == "23:59"
    assert times.display(AT, "second") == "2026-12-31 23:59:58"
    assert times.display(AT, "micro") == "2026-12-31 23:59:58.123456"
    assert times.display(AT.replace(microsecond=0), "micro") == "2026-12-31 23:59:58.000000"
    assert times.display(AT, "sec") == "58"
    assert times.display(None) == ""
    naive = AT.replace(tzinfo=None)  # as SQLite hands a column back: read as UTC
    assert times.display(naive) == "2026-12-31 23:59"


def test_machine_formats() -> None:
    assert times.iso(AT.replace(microsecond=0)) == "2026-12-31T23:59:58Z"
    assert times.iso_or_none(None) is None
    assert times.iso_micro(AT.replace(microsecond=0)) == "2026-12-31T23:59:58.000000Z"
    assert times.compact(AT) == "20261231T235958Z"
    assert times.parse_iso("2026-12-31T23:59:58Z") == AT.replace(microsecond=0)
    with pytest.raises(ValueError):
        times.parse_iso("yesterday")


def test_buckets_floor_and_ceil() -> None:
    assert times.floor(AT, "minute") == datetime(2026, 12, 31, 23, 59, tzinfo=UTC)
    assert times.floor(AT, "hour") == datetime(2026, 12, 31, 23, tzinfo=UTC)
    assert times.floor(AT, "day") == datetime(2026, 12, 31, tzinfo=UTC)
    assert times.ceil(AT, "day") == datetime(2027, 1, 1, tzinfo=UTC)
    start = datetime(2026, 12, 31, tzinfo=UTC)
    assert times.ceil(start, "day") == start
    with pytest.raises(ValueError):
        times.floor(AT, "week")


def test_months() -> None:
    assert times.month_of(AT) == "2026-12"
    assert times.month_range("2026-12") == (
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )
    assert times.recent_months(datetime(2026, 2, 3, tzinfo=UTC), 4) == [
        "2026-02",
        "2026-01",
        "2025-12",
        "2025-11",
    ]
    for bad in ("2026-13", "2026-1", "26-11", "2026-11-01", "\uff12\uff10\uff12\uff16-11", ""):
        with pytest.raises(ValueError, match="YYYY-MM"):
            times.month_range(bad)


def test_templates_show_times_through_the_utc_filter(app) -> None:
    with app.app_context():
        render = app.jinja_env.from_string("{{ at|utc }} / {{ at|utc('date') }}").render
        assert render(at=AT) == "2026-12-31 23:59 / 2026-12-31"


def test_filter_forms_send_a_day_or_a_minute_or_a_second_read_as_utc() -> None:
    assert times.parse_form_time("2026-12-31") == datetime(2026, 12, 31, tzinfo=UTC)
    assert times.parse_form_time("2026-12-31T23:59") == datetime(2026, 12, 31, 23, 59, tzinfo=UTC)
    assert times.parse_form_time("2026-12-31T23:59:58").second == 58
    for bad in ("31/12/2026", "2026-12-31T25:00", "2026-12-31 23:59", ""):
        with pytest.raises(ValueError, match="YYYY-MM-DD"):
            times.parse_form_time(bad)
