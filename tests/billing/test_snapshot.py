"""The billing snapshot of closed days: lines read from it equal the hour rows' lines,
late data reopens a day, `flask billing close`, concurrent writers of one day."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event, select, text
from sqlalchemy.orm import Session
from support.billing import since
from support.rows import count_rows
from support.usage import Key, make_key
from support.web import PASSWORD, Portal

from app import billing
from app.billing import snapshot
from app.extensions import db
from app.models import BillingDay, BillingDayClosed
from app.usage import recorder, rollups
from tests.billing.test_billing import NOV, STATUSES, _raw

DEC = datetime(2026, 12, 1, tzinfo=UTC)


def _lines(app: Flask, start: datetime = NOV, end: datetime = DEC, **kw: Any) -> list:
    with app.app_context():
        return billing.lines(db.session, start, end, **kw)


def _hours_only(app: Flask, start: datetime = NOV, end: datetime = DEC, **kw: Any) -> list:
    """The lines as summed from hour rows alone: at `now` = NOV no day of November is
    closed, so no snapshot is read or written."""
    return _lines(app, start, end, now=NOV, **kw)


def _record(app: Flask, key: Key, at: datetime, tier: str | None, status: int = 200) -> None:
    recorder(app).record(dataclasses.replace(key.event(at=at, status=status), tier=tier))


@pytest.fixture
def month(app: Flask, user: Portal, other: Portal) -> dict[str, Key]:
    """November for three keys: one without a recorded tier, one whose tier changes
    mid-month, one whose 7th of November is split between two tiers; plus events just
    outside the month."""
    keys = {
        "untiered": make_key(app, user, "untiered"),
        "changer": make_key(app, user, "changer"),
        "splitter": make_key(app, other, "splitter"),
    }
    for i, h in enumerate(range(0, 30 * 24, 5)):
        at = NOV + timedelta(hours=h, minutes=(h * 7) % 60)
        status = STATUSES[i % len(STATUSES)]
        _record(app, keys["untiered"], at, None, status)
        _record(app, keys["changer"], at, "basic" if h < 12 * 24 else "premium", status)
    for h in range(0, 30 * 24, 3):
        if h // 24 == 6:
            continue  # the 7th is below
        at = NOV + timedelta(hours=h, seconds=h)
        _record(app, keys["splitter"], at, "premium", STATUSES[h % len(STATUSES)])
    for h in range(24):  # the 7th: every hour, the morning at basic, the afternoon premium
        at = NOV + timedelta(days=6, hours=h, minutes=30)
        _record(app, keys["splitter"], at, "basic" if h < 12 else "premium")
    for key in keys.values():
        _record(app, key, NOV - timedelta(seconds=1), "basic")
        _record(app, key, DEC, "basic")
    recorder(app).flush()
    return keys


def test_snapshot_lines_equal_the_hour_rows_lines(app: Flask, month: dict[str, Key]) -> None:
    expected = _hours_only(app)
    alice = month["untiered"].owner_id
    expected_alice = _hours_only(app, owner_id=alice)
    assert count_rows(app, "billing_day_closed") == 0  # the reference wrote nothing

    # One account's lines over part-snapshotted days: snapshots where there are some,
    # hour rows elsewhere; nothing written by it.
    _lines(app, NOV + timedelta(days=9), NOV + timedelta(days=20))
    assert count_rows(app, "billing_day_closed") == 11
    assert _lines(app, owner_id=alice) == expected_alice
    assert count_rows(app, "billing_day_closed") == 11

    got = _lines(app)
    assert count_rows(app, "billing_day_closed") == 30
    assert count_rows(app, "billing_day") > 30
    assert got == expected
    assert _lines(app) == expected  # read from the snapshot alone
    assert _lines(app, owner_id=alice) == expected_alice

    tiers = {(x.key_name, x.tier): x for x in got}
    assert set(tiers) == {
        ("untiered", "basic"),  # the owner's tier
        ("changer", "basic"),
        ("changer", "premium"),
        ("splitter", "basic"),
        ("splitter", "premium"),
    }
    assert tiers[("splitter", "basic")].hours == 12  # the 7th's morning hours
    assert tiers[("changer", "basic")].hours + tiers[("changer", "premium")].hours == 144

    # Totals per key still equal the raw events.
    raw = _raw(app, NOV, DEC)
    per_key: dict[str, list[int]] = {}
    for x in got:
        n = per_key.setdefault(x.key_id, [0, 0])
        n[0] += x.requests
        n[1] += x.billable
    assert {k: tuple(v) for k, v in per_key.items()} == raw

    # Ranges that do not start or end at midnight: the edges come from hour rows.
    for start, end in (
        (NOV + timedelta(hours=5, minutes=30), NOV + timedelta(days=20, hours=3)),
        (NOV - timedelta(days=2), NOV + timedelta(days=1, hours=1)),
        (NOV + timedelta(days=6, hours=12), NOV + timedelta(days=7)),
    ):
        assert _lines(app, start, end) == _hours_only(app, start, end), (start, end)


def test_hours_recorded_without_a_tier_follow_a_later_tier_change(
    app: Flask, month: dict[str, Key]
) -> None:
    _lines(app)  # snapshot November
    with app.app_context():
        db.session.execute(
            text("UPDATE \"user\" SET tier = 'enterprise' WHERE id = :id"),
            {"id": month["untiered"].owner_id},
        )
        db.session.commit()
    got = _lines(app)
    assert got == _hours_only(app)
    assert {x.tier for x in got if x.key_name == "untiered"} == {"enterprise"}


def test_the_past_month_page_reads_the_snapshot_not_the_hour_rows(
    app: Flask, admin: Portal, month: dict[str, Key]
) -> None:
    first = _page_totals(admin)
    assert count_rows(app, "billing_day_closed") == 30
    with _statements(app) as statements:
        again = _page_totals(admin)
    assert again == first
    assert first[0] == f"{sum(x.billable for x in _hours_only(app)):,}"
    assert any("billing_day" in s for s in statements)
    assert not any("usage_rollup" in s for s in statements)


def _admin(app: Flask) -> Portal:
    result = app.test_cli_runner().invoke(
        args=["users", "create", "root@example.com", "--admin"], input=PASSWORD + "\n"
    )
    assert result.exit_code == 0, result.output
    root = Portal(app.test_client())
    assert root.login("root@example.com").status_code == 302
    return root


def _page_totals(admin: Portal) -> tuple[str, str]:
    html = admin.client.get("/admin/billing?month=2026-11").get_data(as_text=True)
    billable = html.split("data-billing-billable>", 1)[1].split("<", 1)[0]
    amount = html.split("data-billing-total>", 1)[1].split("<", 1)[0]
    return billable, amount


def test_a_late_event_reopens_its_day_and_is_billed_on_the_next_view(
    priced_app: Flask,
) -> None:
    app = priced_app  # small allowances: more billable requests cost more at once
    root = _admin(app)
    alice = Portal(app.test_client())
    alice.register("alice@example.com")
    since(app, "alice@example.com", NOV - timedelta(days=30))
    key = make_key(app, alice)
    for day in range(30):
        _record(app, key, NOV + timedelta(days=day, hours=10), "basic")
    recorder(app).flush()

    before = _page_totals(root)
    assert before == ("30", "1.04 EUR")  # base 1.00 + 20 over at 2.00 per 1,000
    assert count_rows(app, "billing_day_closed") == 30

    late = NOV + timedelta(days=3, hours=18)  # the 4th, snapshotted above
    for i in range(500):
        _record(app, key, late + timedelta(seconds=i), "basic")
    recorder(app).flush()
    with app.app_context():
        left = set(db.session.scalars(select(BillingDayClosed.day)))
        snapped = db.session.scalar(
            select(BillingDay.requests).where(BillingDay.day == snapshot.day_of(late))
        )
    assert snapshot.day_of(late) not in left and len(left) == 29
    assert snapped is None  # its rows went with the marker

    assert _page_totals(root) == ("530", "2.04 EUR")
    assert count_rows(app, "billing_day_closed") == 30  # the view wrote it again
    body = json.loads(
        app.test_cli_runner()
        .invoke(args=["billing", "export", "--month", "2026-11", "--format", "json"])
        .output
    )
    assert body["totals"]["billable"] == 530 and body["totals"]["amount"] == "2.04"
    assert _lines(app) == _hours_only(app)


def test_a_day_reopened_while_lines_read_it_is_summed_from_hour_rows(
    app: Flask, month: dict[str, Key]
) -> None:
    """The marker read says "snapshotted", then late data reopens the day before the
    rows are read: lines() notices and reads hour rows."""
    _lines(app)
    alice = month["untiered"].owner_id
    late = NOV + timedelta(days=14, hours=2)
    with app.app_context():
        engine = db.engine
    fired: list[bool] = []

    def reopen_now(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if not fired and "FROM billing_day_closed" in statement:
            fired.append(True)
            _record(app, month["untiered"], late, None)
            recorder(app).flush()

    event.listen(engine, "after_cursor_execute", reopen_now)
    try:
        got = _lines(app, owner_id=alice)
    finally:
        event.remove(engine, "after_cursor_execute", reopen_now)
    assert fired
    assert got == _hours_only(app, owner_id=alice)
    untiered = next(x for x in got if x.key_name == "untiered")
    raw = _raw(app, NOV, DEC)[month["untiered"].public_id]
    assert (untiered.requests, untiered.billable) == raw


@contextlib.contextmanager
def _statements(app: Flask) -> Iterator[list[str]]:
    """The SQL the app's engine sends while the block runs."""
    with app.app_context():
        engine = db.engine
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", seen)


def test_a_flush_of_todays_events_touches_no_snapshot(app: Flask, month: dict[str, Key]) -> None:
    _lines(app)
    markers = count_rows(app, "billing_day_closed")
    key = month["changer"]
    with _statements(app) as statements:
        for _ in range(3):
            recorder(app).record(key.event(at=datetime.now(UTC)))
        recorder(app).flush()
    assert any("usage_rollup" in s for s in statements)  # the flush was watched
    assert not any("billing_day" in s for s in statements)
    assert count_rows(app, "billing_day_closed") == markers

    # The check can fail: a batch with one event of a closed day does reopen it.
    with _statements(app) as statements:
        recorder(app).record(key.event(at=NOV + timedelta(days=2)))
        recorder(app).flush()
    assert any(s.lstrip().upper().startswith("DELETE FROM BILLING_DAY") for s in statements)
    assert count_rows(app, "billing_day_closed") == markers - 1


def test_flask_billing_close_writes_the_snapshot_once(app: Flask, month: dict[str, Key]) -> None:
    runner = app.test_cli_runner()
    bad = runner.invoke(args=["billing", "close", "--through", "30 November"])
    assert bad.exit_code != 0 and "'--through'" in bad.output and "%Y-%m-%d" in bad.output
    assert count_rows(app, "billing_day_closed") == 0

    part = runner.invoke(args=["billing", "close", "--through", "2026-11-10"])
    assert part.exit_code == 0, part.output
    # From the first hour row (31 October) through 10 November.
    assert "snapshotted 11 days" in part.output and "through 2026-11-10" in part.output
    assert count_rows(app, "billing_day_closed") == 11

    result = runner.invoke(args=["billing", "close"])
    assert result.exit_code == 0, result.output
    last = snapshot.closed_through(datetime.now(UTC)) - snapshot.DAY
    days = (last - snapshot.day_of(NOV - timedelta(days=1))).days + 1
    rows = count_rows(app, "billing_day")
    assert f"snapshotted {days - 11} days" in result.output
    assert f"through {last:%Y-%m-%d}" in result.output
    assert count_rows(app, "billing_day_closed") == days
    with app.app_context():
        used = db.session.execute(
            text("SELECT COUNT(*) FROM usage_rollup WHERE granularity = 'day' AND bucket < :hi"),
            {"hi": last + snapshot.DAY},
        ).scalar_one()
    assert rows == used + 1  # a row per key and day with use; the splitter's 7th has two

    again = runner.invoke(args=["billing", "close"])
    assert again.exit_code == 0, again.output
    assert "snapshotted 0 days (0 rows)" in again.output
    assert count_rows(app, "billing_day_closed") == days
    assert count_rows(app, "billing_day") == rows
    assert _lines(app) == _hours_only(app)


@pytest.mark.concurrent_writers
def test_concurrent_snapshots_of_the_same_days_write_each_day_once(
    app: Flask, month: dict[str, Key]
) -> None:
    with app.app_context():
        engine = db.engine
    now = datetime.now(UTC)
    start = threading.Barrier(4)
    results: list[snapshot.Closed] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            start.wait()
            results.append(snapshot.close(engine, NOV, DEC, now=now))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
        assert not t.is_alive(), "a snapshot did not finish"
    assert errors == []
    assert sum(r.days for r in results) == 30
    assert count_rows(app, "billing_day_closed") == 30
    assert sum(r.rows for r in results) == count_rows(app, "billing_day")
    # Sequentially, once more: nothing to write.
    assert snapshot.close(engine, NOV, DEC, now=now) == snapshot.Closed(0, 0)
    assert _lines(app) == _hours_only(app)


@pytest.mark.concurrent_writers
def test_a_snapshot_waits_for_late_rows_being_written_into_its_day(
    app: Flask, month: dict[str, Key]
) -> None:
    """The recorder's transaction reopens the day and adds rows; a snapshot of that day
    begun meanwhile must wait for its commit and include them, not read around them."""
    with app.app_context():
        engine = db.engine
    day = NOV + timedelta(days=20)
    key = month["splitter"]
    late = [
        dataclasses.replace(key.event(at=day + timedelta(hours=5, seconds=i)), tier="premium")
        for i in range(7)
    ]
    done: list[snapshot.Closed] = []
    with Session(engine) as writer, writer.begin():
        rollups.add(writer, late)  # reopens the day, adds its rows; open
        worker = threading.Thread(
            target=lambda: done.append(
                snapshot.close(engine, day, day + snapshot.DAY, now=datetime.now(UTC))
            )
        )
        worker.start()
        time.sleep(0.3)
        assert worker.is_alive()  # waiting for the writer's claim on the day
    worker.join(30)
    assert len(done) == 1 and done[0].days == 1 and done[0].rows >= 1
    with app.app_context():
        snapped = db.session.execute(
            select(BillingDay.requests).where(BillingDay.key_id == key.id, BillingDay.day == day)
        ).scalars()
        hours = db.session.execute(
            text(
                "SELECT SUM(count) FROM usage_rollup WHERE key_id = :k AND granularity = 'hour' "
                "AND bucket >= :lo AND bucket < :hi"
            ),
            {"k": key.id, "lo": day, "hi": day + snapshot.DAY},
        ).scalar_one()
    assert sum(snapped) == hours
    assert _lines(app) == _hours_only(app)
