"""The plan is the account's (issue 18): its base price once a month, prorated by the
days at each tier; included requests pooled over its keys; overage priced on the pool.
Plans of tests/billing/conftest.py: premium 100 included, 10.00 a month, 1.00 per 1,000
over; basic 10 included, 1.00, 2.00."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from flask import Flask
from sqlalchemy import select, text
from support.billing import since
from support.usage import Key, make_key
from support.web import Portal

from app import accounts
from app.extensions import db
from app.models import User
from app.times import month_of, recent_months
from app.usage import recorder
from tests.billing.test_snapshot import _admin

OCT = datetime(2026, 10, 1, tzinfo=UTC)
NOV = datetime(2026, 11, 1, tzinfo=UTC)


def _account(app: Flask, email: str, tier: str = "premium", at: datetime = OCT) -> Portal:
    """A logged-in account that exists from `at` at `tier`."""
    portal = Portal(app.test_client())
    assert portal.register(email).status_code == 302
    since(app, email, at)
    if tier != "basic":
        with app.app_context():
            user = db.session.scalar(select(User).where(User.email == email))
            accounts.set_tier(db.session, user, tier, actor="cli", at=at)
    return portal


def _use(app: Flask, key: Key, n: int, at: datetime, tier: str = "premium") -> None:
    rec = recorder(app)
    for i in range(n):
        rec.record(dataclasses.replace(key.event(at=at + timedelta(seconds=i)), tier=tier))
    rec.flush()


def _export(app: Flask, month: str, fmt: str = "csv") -> str:
    result = app.test_cli_runner().invoke(
        args=["billing", "export", "--month", month, "--format", fmt]
    )
    assert result.exit_code == 0, result.output
    return result.output


def _plan_rows(app: Flask, month: str) -> dict[str, list[dict[str, str]]]:
    rows = csv.DictReader(io.StringIO(_export(app, month)))
    out: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        if r["line"] == "plan":
            out.setdefault(r["email"], []).append(r)
    return out


def test_three_keys_share_one_allowance_and_pay_the_base_once(priced_app: Flask) -> None:
    app = priced_app
    alice = _account(app, "alice@example.com")
    bob = _account(app, "bob@example.com")
    for i in range(3):  # alice: three keys, 40 billable requests each
        _use(app, make_key(app, alice, f"a{i}"), 40, NOV + timedelta(days=i))
    _use(app, make_key(app, bob, "b"), 120, NOV)  # bob: the same 120 from one key

    plans = _plan_rows(app, "2026-11")
    for email in ("alice@example.com", "bob@example.com"):
        (row,) = plans[email]  # one charge: one plan, one month
        # base 10.00 once; 120 of 100 included -> 20 over at 1.00 per 1,000 -> 0.02
        assert (row["days"], row["base"], row["allowance"]) == ("30", "10.00", "100")
        assert (row["billable"], row["overage"], row["amount"]) == ("120", "20", "10.02")
    body = json.loads(_export(app, "2026-11", "json"))
    assert body["totals"]["amount"] == "20.04"
    assert [len(a["keys"]) for a in body["accounts"]] == [3, 1]
    html = alice.client.get("/billing?month=2026-11").get_data(as_text=True)
    assert "data-billing-total>" in html
    admin_html = _admin(app).client.get("/admin/billing?month=2026-11").get_data(as_text=True)
    assert "data-billing-total>20.04 EUR<" in admin_html


def test_a_premium_account_without_use_is_billed_and_projected_its_base_once(
    priced_app: Flask,
) -> None:
    app = priced_app
    now = datetime.now(UTC)
    alice = _account(app, "alice@example.com", at=now - timedelta(days=70))
    for i in range(3):
        make_key(app, alice, f"idle-{i}")
    html = alice.client.get("/billing").get_data(as_text=True)
    assert "data-billing-total>10.00 EUR<" in html
    assert "data-billing-projected>10.00 EUR<" in html
    assert "0 of 100 included requests used" in html
    rows = csv.DictReader(
        io.StringIO(alice.client.get("/billing/export.csv").get_data(as_text=True))
    )
    assert [(r["line"], r["amount"]) for r in rows] == [("plan", "10.00")]


def test_a_month_starts_on_the_accounts_first_day_and_none_comes_before_it(
    priced_app: Flask,
) -> None:
    app = priced_app
    _account(app, "alice@example.com", at=NOV + timedelta(days=10, hours=17))  # 11 November
    (row,) = _plan_rows(app, "2026-11")["alice@example.com"]
    # 20 of 30 days: base 6.67, allowance 67.
    assert (row["days"], row["base"], row["allowance"], row["amount"]) == (
        "20",
        "6.67",
        "67",
        "6.67",
    )
    assert "alice@example.com" not in _plan_rows(app, "2026-10")

    now = datetime.now(UTC)
    bob = _account(app, "bob@example.com", at=now - timedelta(days=40))
    html = bob.client.get("/billing").get_data(as_text=True)
    past = re.findall(r'<td class="name">(\d{4}-\d{2})</td>', html)
    first = month_of(now - timedelta(days=40))
    assert past == [m for m in recent_months(now, 7)[1:] if m >= first]
    carol = _account(app, "carol@example.com", at=now)
    assert "Your account is new this month" in carol.client.get("/billing").get_data(as_text=True)


def test_a_key_of_each_kind_is_in_the_pool(priced_app: Flask) -> None:
    app = priced_app
    alice = _account(app, "alice@example.com")
    live = make_key(app, alice, "live")
    revoked = make_key(app, alice, "revoked")
    expired = make_key(app, alice, "expired")
    rotated = make_key(app, alice, "rotated")
    for n, key in enumerate((live, revoked, expired, rotated), start=1):
        _use(app, key, 30 * n, NOV + timedelta(days=n))
    resp = alice.submit(
        f"/keys/{revoked.public_id}", {"confirm": "y"}, action=f"/keys/{revoked.public_id}/revoke"
    )
    assert resp.status_code in (200, 302)
    resp = alice.submit(
        f"/keys/{rotated.public_id}", {"grace": "1h"}, action=f"/keys/{rotated.public_id}/rotate"
    )
    assert resp.status_code == 200
    with app.app_context():
        db.session.execute(
            text("UPDATE api_key SET expires_at = :t WHERE id = :k"),
            {"t": NOV + timedelta(days=20), "k": expired.id},
        )
        db.session.commit()

    rows = list(csv.DictReader(io.StringIO(_export(app, "2026-11"))))
    keys = {r["key_name"]: int(r["billable"]) for r in rows if r["line"] == "key"}
    assert keys == {"live": 30, "revoked": 60, "expired": 90, "rotated": 120}
    (plan,) = [r for r in rows if r["line"] == "plan"]
    # 300 billable pooled against 100 included: 200 over -> 0.20, plus the base once.
    assert (plan["billable"], plan["overage"], plan["amount"]) == ("300", "200", "10.20")


def test_the_page_the_csv_the_admin_page_and_the_exports_agree(priced_app: Flask) -> None:
    app = priced_app
    now = datetime.now(UTC)
    alice = _account(app, "alice@example.com", at=now - timedelta(days=45))
    _account(app, "bob@example.com", tier="basic", at=now - timedelta(days=45))
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    for i in range(3):
        _use(app, make_key(app, alice, f"k{i}"), 70, start)
    month = month_of(now)
    admin = _admin(app)  # an account too: created before the exports are read
    page = alice.client.get("/billing").get_data(as_text=True)
    amount = page.split("data-billing-total>", 1)[1].split(" ", 1)[0]
    own = csv.DictReader(
        io.StringIO(alice.client.get("/billing/export.csv").get_data(as_text=True))
    )
    assert str(sum(Decimal(r["amount"]) for r in own if r["amount"])) == amount
    body = json.loads(_export(app, month, "json"))
    (mine,) = [a for a in body["accounts"] if a["email"] == "alice@example.com"]
    assert mine["amount"] == amount
    rows = _plan_rows(app, month)
    assert str(sum(Decimal(r["amount"]) for r in rows["alice@example.com"])) == amount
    assert "bob@example.com" in rows  # basic, no use: only his base
    admin_page = admin.client.get(f"/admin/billing?month={month}").get_data(as_text=True)
    assert f"data-billing-total>{body['totals']['amount']} EUR<" in admin_page
    download = admin.client.get(f"/admin/billing/export.json?month={month}").get_data(as_text=True)
    assert json.loads(download)["totals"] == body["totals"]


def test_a_tier_changed_mid_day_bills_the_mornings_use_against_the_old_tiers_hours(
    app: Flask,
) -> None:
    """Basic since October, upgraded at 10:00 on 1 November: the morning's requests were
    made at basic, so basic's ten hours include some (default plans: 100,000 a month),
    and none of them is overage. Before, basic held no day's end that month: 0 days,
    nothing included, all 300 over."""
    alice = _account(app, "alice@example.com", tier="basic")
    key = make_key(app, alice)
    _use(app, key, 300, NOV + timedelta(hours=8), tier="basic")
    change = NOV + timedelta(hours=10)
    with app.app_context():
        owner = db.session.scalar(select(User).where(User.email == "alice@example.com"))
        accounts.set_tier(db.session, owner, "premium", actor="cli", at=change)
    _use(app, key, 500, change + timedelta(hours=2))

    own = csv.DictReader(
        io.StringIO(alice.client.get("/billing/export.csv?month=2026-11").get_data(as_text=True))
    )
    plan = {r["tier"]: r for r in own if r["line"] == "plan"}
    # Basic: 10 of 720 hours -> 0.42 days, 1,389 included (rounded up), 300 billable.
    basic = plan["basic"]
    assert (basic["days"], basic["allowance"], basic["billable"]) == ("0.42", "1389", "300")
    assert (basic["overage"], basic["amount"]) == ("0", "0.00")
    # Premium: the other 710 hours -> 29.58 days, 48.32 of 49.00, 986,112 included.
    premium = plan["premium"]
    assert (premium["days"], premium["base"], premium["allowance"]) == ("29.58", "48.32", "986112")
    assert (premium["billable"], premium["overage"], premium["amount"]) == ("500", "0", "48.32")

    # The past month on the owner's page, the admin page and the export: the same 48.32.
    page = alice.client.get("/billing").get_data(as_text=True)
    assert re.search(r'<td class="name">2026-11</td>.*?48\.32 USD', page, re.S)
    admin = _admin(app).client.get("/admin/billing?month=2026-11").get_data(as_text=True)
    assert "data-billing-total>48.32 USD<" in admin
    assert re.search(r"alice@example\.com.*?basic.*?0\.42 / 30.*?1,389", admin, re.S)
    body = json.loads(_export(app, "2026-11", "json"))
    (mine,) = [a for a in body["accounts"] if a["email"] == "alice@example.com"]
    assert mine["amount"] == "48.32"
    assert [(c["tier"], c["days"], c["overage"]) for c in mine["charges"]] == [
        ("basic", "0.42", 0),
        ("premium", "29.58", 0),
    ]
