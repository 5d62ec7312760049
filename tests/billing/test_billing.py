"""Billing by plan: totals from the roll-ups equal the raw events, tiers per hour,
the three export formats, /billing and /admin/billing."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select, text
from support.billing import since
from support.db import base_config
from support.rows import audit_events
from support.usage import Key, make_key
from support.web import Portal

from app import accounts, create_app
from app.config import ConfigError
from app.extensions import db
from app.models import User
from app.usage import recorder

OCT = datetime(2026, 10, 1, tzinfo=UTC)
NOV = datetime(2026, 11, 1, tzinfo=UTC)
# Every status class, the refusals that are not billable, and nonsense a service reported.
STATUSES = (200, 201, 204, 302, 304, 400, 401, 403, 404, 429, 429, 500, 502, 503, 99, 600)


def _raw(app: Flask, month_start: datetime, month_end: datetime) -> dict[str, tuple[int, int]]:
    """(requests, billable) per key public id, straight from the raw events."""
    with app.app_context():
        rows = db.session.execute(
            text(
                "SELECT k.public_id, COUNT(*), "
                "SUM(CASE WHEN e.status BETWEEN 200 AND 499 AND e.status <> 429 "
                "THEN 1 ELSE 0 END) "
                "FROM usage_event e JOIN api_key k ON k.id = e.key_id "
                "WHERE e.at >= :lo AND e.at < :hi GROUP BY k.public_id"
            ),
            {"lo": month_start, "hi": month_end},
        ).all()
    return {pid: (int(n), int(b)) for pid, n, b in rows}


def _traffic(app: Flask, keys: list[Key], tiers: list[str]) -> None:
    """A month of mixed traffic for each key, plus events just outside the month."""
    rec = recorder(app)
    for i, (key, tier) in enumerate(zip(keys, tiers, strict=True)):
        for h in range(0, 30 * 24, 7 + i):  # every 7th (8th, ...) hour of November
            at = NOV + timedelta(hours=h, minutes=(h * 13) % 60, seconds=h % 60)
            status = STATUSES[(h + i) % len(STATUSES)]
            rec.record(dataclasses.replace(key.event(status=status, at=at), tier=tier))
        for at in (NOV - timedelta(seconds=1), datetime(2026, 12, 1, tzinfo=UTC)):
            rec.record(dataclasses.replace(key.event(at=at), tier=tier))
    rec.flush()


@pytest.fixture
def two_accounts(app: Flask, user: Portal, other: Portal) -> list[Key]:
    for email in ("alice@example.com", "bob@example.com"):
        since(app, email, OCT)
    keys = [make_key(app, user, "alice-a"), make_key(app, user, "alice-b")]
    keys.append(make_key(app, other, "bob-a"))
    _traffic(app, keys, ["basic", "basic", "premium"])
    return keys


def _cli(app: Flask, *args: str) -> str:
    result = app.test_cli_runner().invoke(args=["billing", "export", *args])
    assert result.exit_code == 0, result.output
    return result.stdout  # the export alone: progress goes to stderr


def test_export_totals_equal_the_raw_events(app: Flask, two_accounts: list[Key]) -> None:
    raw = _raw(app, NOV, datetime(2026, 12, 1, tzinfo=UTC))
    assert len(raw) == 3 and all(b < n for n, b in raw.values())  # refusals were excluded

    rows = list(csv.DictReader(io.StringIO(_cli(app, "--month", "2026-11"))))
    keys = [r for r in rows if r["line"] == "key"]
    got = {r["key_id"]: (int(r["requests"]), int(r["billable"])) for r in keys}
    assert got == raw
    assert {r["email"] for r in rows} == {"alice@example.com", "bob@example.com"}
    plan_rows = [r for r in rows if r["line"] == "plan"]
    assert sum(int(r["billable"]) for r in plan_rows) == sum(b for _, b in raw.values())

    body = json.loads(_cli(app, "--month", "2026-11", "--format", "json"))
    assert body["totals"]["requests"] == sum(n for n, _ in raw.values())
    assert body["totals"]["billable"] == sum(b for _, b in raw.values())
    amounts = [Decimal(a["amount"]) for a in body["accounts"]]
    assert Decimal(body["totals"]["amount"]) == sum(amounts)
    assert sum(Decimal(r["amount"]) for r in plan_rows) == sum(amounts)

    events = [
        json.loads(x)
        for x in _cli(app, "--month", "2026-11", "--format", "cloudevents").splitlines()
    ]
    per_key: dict[str, list[int]] = {}
    for e in events:
        n = per_key.setdefault(e["data"]["key_id"], [0, 0])
        n[0] += e["data"]["requests"]
        n[1] += e["data"]["billable"]
    assert {k: tuple(v) for k, v in per_key.items()} == raw


def test_cloudevents_are_one_per_key_and_hour_with_stable_ids(
    app: Flask, two_accounts: list[Key]
) -> None:
    first = _cli(app, "--month", "2026-11", "--format", "cloudevents")
    again = _cli(app, "--month", "2026-11", "--format", "cloudevents")
    assert first == again  # a re-export is the same events, ids included
    events = [json.loads(x) for x in first.splitlines()]
    ids = [e["id"] for e in events]
    assert len(ids) == len(set(ids))
    with app.app_context():
        hours = db.session.execute(
            text(
                "SELECT COUNT(*) FROM usage_rollup WHERE granularity = 'hour' "
                "AND bucket >= :lo AND bucket < :hi"
            ),
            {"lo": NOV, "hi": datetime(2026, 12, 1, tzinfo=UTC)},
        ).scalar_one()
    assert len(events) == hours
    # Progress on stderr (a line at every tenth without a terminal), never in the data.
    result = app.test_cli_runner().invoke(
        args=["billing", "export", "--month", "2026-11", "--format", "cloudevents"]
    )
    assert result.stdout == first
    assert f"Events: {hours}/{hours} (100 %)" in result.stderr
    e = events[0]
    assert {"specversion", "type", "source", "subject", "id", "time", "data"} <= set(e)
    assert e["specversion"] == "1.0"
    assert e["time"].endswith(":00:00Z") and e["time"].startswith("2026-11-")
    assert e["subject"].startswith("user:")
    assert e["id"] == f"{e['data']['key_id']}-{e['time'][:13].replace('-', '').replace(':', '')}"


def test_a_tier_change_mid_month_prorates_the_plan_by_time_and_prices_use_at_its_tier(
    priced_app: Flask,
) -> None:
    app = priced_app
    alice = Portal(app.test_client())
    alice.register("alice@example.com")
    since(app, "alice@example.com", OCT)
    key = make_key(app, alice)
    rec = recorder(app)
    for h in range(6):  # six hours at basic, five billable requests each
        for m in range(5):
            rec.record(
                dataclasses.replace(key.event(at=NOV + timedelta(hours=h, minutes=m)), tier="basic")
            )
        rec.record(
            dataclasses.replace(key.event(at=NOV + timedelta(hours=h), status=503), tier="basic")
        )
    # Upgraded on 21 November at 15:00: 20 days 15 hours at basic, the rest at premium.
    change = NOV + timedelta(days=20, hours=15)
    with app.app_context():
        owner = db.session.scalar(select(User).where(User.email == "alice@example.com"))
        accounts.set_tier(db.session, owner, "premium", actor="cli", at=change)
    for h in range(4):  # then four hours at premium, a hundred each
        for m in range(100):
            at = change + timedelta(hours=h, seconds=m)
            rec.record(dataclasses.replace(key.event(at=at), tier="premium"))
    rec.flush()

    rows = list(csv.DictReader(io.StringIO(_cli(app, "--month", "2026-11"))))
    plan = {r["tier"]: r for r in rows if r["line"] == "plan"}
    assert set(plan) == {"basic", "premium"}
    basic, premium = plan["basic"], plan["premium"]
    # Basic: 20.625 of 30 days -> base 0.69, allowance 7 (6.875 of 10, rounded up); 30
    # billable, 23 over at 2.00 per 1,000 -> 0.05; 0.74.
    assert (basic["days"], basic["base"], basic["allowance"]) == ("20.63", "0.69", "7")
    assert (basic["requests"], basic["billable"], basic["overage"]) == ("36", "30", "23")
    assert basic["amount"] == "0.74" and basic["currency"] == "EUR"
    # Premium: 9.375 days -> base 3.13, allowance 32 (31.25); 400 billable, 368 over at
    # 1.00 -> 0.37.
    assert (premium["days"], premium["base"], premium["allowance"]) == ("9.38", "3.13", "32")
    assert (premium["billable"], premium["overage"], premium["amount"]) == ("400", "368", "3.50")
    total = json.loads(_cli(app, "--month", "2026-11", "--format", "json"))["totals"]
    assert total["amount"] == "4.24"
    # October: basic all month, no use: its base only.
    october = json.loads(_cli(app, "--month", "2026-10", "--format", "json"))["totals"]
    assert october["amount"] == "1.00"


def test_the_api_records_the_owners_tier_with_each_hour(app: Flask, admin: Portal) -> None:
    alice = Portal(app.test_client())
    alice.register("alice@example.com")
    with app.app_context():
        db.session.execute(
            text("UPDATE \"user\" SET tier = 'premium' WHERE email = 'alice@example.com'")
        )
        db.session.commit()
    key = make_key(app, alice)
    assert (
        app.test_client().post("/api/v1/keys/validate", json={"key": key.plaintext}).status_code
        == 200
    )
    recorder(app).flush()
    with app.app_context():
        tiers = db.session.execute(
            text("SELECT granularity, tier FROM usage_rollup WHERE key_id = :k"), {"k": key.id}
        ).all()
    assert sorted(tiers) == [("day", "premium"), ("hour", "premium"), ("minute", "premium")]


@pytest.mark.parametrize(
    "plans",
    [
        "not json",
        '{"gold": {}}',
        '{"basic": {"included": -1}}',
        '{"basic": {"base": "free"}}',
        '{"basic": {"per_1000": "NaN"}}',
        '{"currency": "dollars"}',
        '{"basic": {"included": 1.5}}',
    ],
)
def test_a_malformed_plan_stops_start_up_with_its_reason(tmp_path: Path, plans: str) -> None:
    with pytest.raises(ConfigError, match="BILLING_PLANS"):
        create_app({**base_config(tmp_path, "sqlite://"), "BILLING_PLANS": plans})


def test_the_export_refuses_a_malformed_month(app: Flask) -> None:
    for month in ("November", "2026-13", "2026-1", "2026-11-01", "2026\x0011"):
        result = app.test_cli_runner().invoke(args=["billing", "export", "--month", month])
        assert result.exit_code != 0 and "YYYY-MM" in result.output, month
    result = app.test_cli_runner().invoke(
        args=["billing", "export", "--month", "2026-11", "--format", "xml"]
    )
    assert result.exit_code != 0


def test_billing_page_shows_only_the_users_own_keys_and_its_csv_matches(
    app: Flask, user: Portal, other: Portal
) -> None:
    mine = make_key(app, user, "mine")
    theirs = make_key(app, other, "theirs")
    rec = recorder(app)
    now = datetime.now(UTC)
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    for i in range(7):
        rec.record(mine.event(at=month_start + timedelta(seconds=i), status=200 if i else 429))
        rec.record(theirs.event(at=month_start + timedelta(seconds=i)))
    rec.flush()
    page = user.client.get("/billing")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert mine.public_id in html and theirs.public_id not in html
    assert "data-billing-billable>6<" in html  # seven requests, one of them a 429
    csv_resp = user.client.get(f"/billing/export.csv?month={now:%Y-%m}")
    assert csv_resp.status_code == 200 and csv_resp.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(csv_resp.get_data(as_text=True))))
    assert [r["key_id"] for r in rows if r["line"] == "key"] == [mine.public_id]
    total = sum(Decimal(r["amount"]) for r in rows if r["amount"])
    assert f"data-billing-total>{total} USD<" in html
    assert user.client.get("/billing/export.csv?month=2026-13").status_code == 400
    assert Portal(app.test_client()).client.get("/billing").status_code == 302  # log in first


def test_admin_billing_page_and_downloads(
    app: Flask, admin: Portal, two_accounts: list[Key]
) -> None:
    page = admin.client.get("/admin/billing?month=2026-11")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "alice@example.com" in html and "bob@example.com" in html
    body = json.loads(_cli(app, "--month", "2026-11", "--format", "json"))
    assert f"data-billing-total>{body['totals']['amount']} USD<" in html
    for fmt, mimetype in (
        ("csv", "text/csv"),
        ("json", "application/json"),
        ("cloudevents", "application/x-ndjson"),
    ):
        resp = admin.client.get(f"/admin/billing/export.{fmt}?month=2026-11")
        assert resp.status_code == 200 and resp.mimetype == mimetype, fmt
        assert "attachment" in resp.headers["Content-Disposition"]
        # The CLI's stdout is text mode: compare with the line ends normalised.
        same = _cli(app, "--month", "2026-11", "--format", fmt).replace("\r\n", "\n")
        assert resp.get_data(as_text=True).replace("\r\n", "\n") == same
        if fmt == "cloudevents":  # what the page's progress counts the lines against
            assert resp.headers["X-Export-Events"] == str(len(same.splitlines())) != "0"
    exported = audit_events(app, "billing.exported")
    assert len(exported) == 3
    assert admin.client.get("/admin/billing?month=2026-13").status_code == 400
    assert admin.client.get("/admin/billing/export.xml?month=2026-11").status_code == 404


def test_only_admins_reach_admin_billing(app: Flask, user: Portal, two_accounts: list[Key]) -> None:
    for path in ("/admin/billing", "/admin/billing/export.csv?month=2026-11"):
        assert user.client.get(path).status_code == 403
    assert len(audit_events(app, "access.unauthorized")) == 2
    assert audit_events(app, "billing.exported") == []


def test_a_key_name_that_looks_like_a_formula_stays_text_in_the_csv(
    app: Flask, user: Portal
) -> None:
    key = make_key(app, user, "=HYPERLINK(1)")
    now = datetime.now(UTC)
    recorder(app).record(key.event(at=now))
    recorder(app).flush()
    rows = list(
        csv.DictReader(io.StringIO(user.client.get("/billing/export.csv").get_data(as_text=True)))
    )
    assert [r["key_name"] for r in rows if r["line"] == "key"] == ["'=HYPERLINK(1)"]
