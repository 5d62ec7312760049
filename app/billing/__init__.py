"""Billing by plan: what an account's use in a month costs, from the hour roll-ups
(summed once per closed day into a snapshot, app/billing/snapshot.py).

The one place that turns usage into money (docs/usage.md, "Billing"):

- a plan per tier (included requests a month, base price, price per 1,000 requests
  over the allowance, one currency), from BILLING_PLANS, parsed once at start-up;
- billable = an answered request of an identified key whose status is 200-499 and
  not 429 (rate-limit refusals and our own 5xx failures are not charged), and never a
  test key's (ApiKey.test: its use is recorded and shown, not billed);
- a tier is the account's subscription: app/billing/statement.py charges the base price
  once per account and month, prorated by the time at each tier, and prices the overage
  on the pool of the account's keys; here, each key's use per recorded tier (`lines`),
  the breakdown that pool is summed from.

Money is Decimal throughout, rounded once per charge (half up, to the currency's cents).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from flask import Flask, current_app
from sqlalchemy import and_, func, literal, or_, select, union_all
from sqlalchemy.orm import Session

from app import times
from app.billing import snapshot
from app.billing.snapshot import BILLABLE
from app.config import TIERS, ConfigError
from app.models import ApiKey, BillingDay, UsageRollup, User

CENT = Decimal("0.01")

# Documented in docs/usage.md; BILLING_PLANS overrides any part of it.
DEFAULT_PLANS: dict[str, Any] = {
    "currency": "USD",
    "basic": {"included": 100_000, "base": "0.00", "per_1000": "0.50"},
    "premium": {"included": 1_000_000, "base": "49.00", "per_1000": "0.30"},
    "enterprise": {"included": 10_000_000, "base": "499.00", "per_1000": "0.10"},
}


def is_billable(status: int) -> bool:
    """The definition in docs/usage.md, for one answered request of an identified key
    (the SQL twin over a roll-up row is snapshot.BILLABLE)."""
    return 200 <= status <= 499 and status != 429


@dataclass(frozen=True)
class Plan:
    tier: str
    included: int  # requests a month
    base: Decimal  # a month
    per_1000: Decimal  # per 1,000 billable requests over the allowance


@dataclass(frozen=True)
class Plans:
    currency: str
    by_tier: dict[str, Plan]

    def __getitem__(self, tier: str) -> Plan:
        return self.by_tier.get(tier) or self.by_tier["basic"]

    @classmethod
    def parse(cls, raw: str | Mapping[str, Any] | None) -> Plans:
        """DEFAULT_PLANS with `raw` (JSON text or a mapping) merged over it, checked."""
        given: Mapping[str, Any]
        if raw is None or raw == "":
            given = {}
        elif isinstance(raw, str):
            try:
                given = json.loads(raw)
            except ValueError as exc:
                raise ConfigError(f"BILLING_PLANS is not valid JSON: {exc}") from exc
        else:
            given = raw
        if not isinstance(given, Mapping):
            raise ConfigError("BILLING_PLANS must be a JSON object")
        unknown = set(given) - {"currency", *TIERS}
        if unknown:
            raise ConfigError(f"BILLING_PLANS: unknown entries {', '.join(sorted(unknown))}")
        currency = str(given.get("currency", DEFAULT_PLANS["currency"]))
        if not (len(currency) == 3 and currency.isascii() and currency.isalpha()):
            raise ConfigError("BILLING_PLANS: currency must be a 3-letter code such as USD")
        plans = {}
        for tier in TIERS:
            part = given.get(tier, {})
            if not isinstance(part, Mapping) or set(part) - {"included", "base", "per_1000"}:
                raise ConfigError(
                    f"BILLING_PLANS.{tier}: use an object with included, base, per_1000"
                )
            merged = {**DEFAULT_PLANS[tier], **part}
            try:
                included = merged["included"]
                if isinstance(included, bool) or not isinstance(included, int) or included < 0:
                    raise ValueError
                base, per_1000 = Decimal(str(merged["base"])), Decimal(str(merged["per_1000"]))
                if not (base.is_finite() and per_1000.is_finite()) or base < 0 or per_1000 < 0:
                    raise ValueError
            except (ValueError, InvalidOperation) as exc:
                raise ConfigError(
                    f"BILLING_PLANS.{tier}: included is a whole number >= 0, base and "
                    'per_1000 are amounts >= 0 (e.g. "49.00")'
                ) from exc
            plans[tier] = Plan(tier, included, base, per_1000)
        return cls(currency.upper(), plans)


def init_app(app: Flask) -> None:
    """Parse BILLING_PLANS once; a malformed value stops start-up with its reason."""
    app.extensions["keyledger.billing_plans"] = Plans.parse(app.config.get("BILLING_PLANS"))


def plans(app: Flask | None = None) -> Plans:
    return (app or current_app).extensions["keyledger.billing_plans"]


# -------------------------------------------------------------------------- lines


@dataclass(frozen=True)
class Line:
    """One key's use at one recorded tier in one month: the breakdown of an account's
    pool (the money is the account's, app/billing/statement.py)."""

    owner_id: int
    email: str
    key_id: str  # the key's public id
    key_name: str
    tier: str
    hours: int  # hours with use at this tier
    requests: int
    billable: int


def _tier_expr() -> Any:
    # Rows written before the tier was recorded bill at the owner's current tier.
    return func.coalesce(UsageRollup.tier, User.tier)


def lines(
    session: Session,
    start: datetime,
    end: datetime,
    *,
    owner_id: int | None = None,
    now: datetime | None = None,
) -> list[Line]:
    """Every key's use per recorded tier in [start, end) (a month): the day snapshots of its closed
    days (app/billing/snapshot.py) and the hour roll-ups of the rest.

    Across every account, the closed days without a snapshot are written first. One
    account's lines (`owner_id`) only read the snapshots there are: its page would
    otherwise pay for every account's keys. Both give exactly what summing the range's
    hour rows gives. Summed per key and recorded tier in the database, then joined to
    keys and owners. Ordered by email, key, tier.
    """
    now = now or datetime.now(UTC)
    lo, hi = snapshot.closed_days(start, end, now)
    if owner_id is None and lo < hi:
        snapshot.close(session.get_bind(), lo, hi, now=now)
    seen = snapshot.written(session, lo, hi)
    rows = session.execute(_usage(start, end, sorted(seen), owner_id)).all()
    if seen:
        # A day reopened (or rewritten) between reading its marker and its rows may have
        # been read without them; the hour rows alone are always right.
        again = snapshot.written(session, lo, hi)
        if any(again.get(day) != at for day, at in seen.items()):
            rows = session.execute(_usage(start, end, [], owner_id)).all()
    return _merged(rows)


def _usage(start: datetime, end: datetime, snapped: list[datetime], owner_id: int | None) -> Any:
    """(owner, email, key, name, tier, hours, requests, billable) rows for [start, end):
    billing_day rows for the `snapped` days (sorted), hour rows for the rest. Either part
    may give a key and tier more than once."""
    runs: list[tuple[datetime, datetime]] = []  # runs of consecutive snapshotted days
    for day in snapped:
        if runs and runs[-1][1] == day:
            runs[-1] = (runs[-1][0], day + snapshot.DAY)
        else:
            runs.append((day, day + snapshot.DAY))
    gaps: list[tuple[datetime, datetime]] = []  # what the runs leave of [start, end)
    at = start
    for lo, hi in runs:
        if at < lo:
            gaps.append((at, lo))
        at = hi
    if at < end or not runs:
        gaps.append((at, end))  # today's hours, the month's last days, or everything
    keys = select(ApiKey.id).where(ApiKey.user_id == owner_id)
    parts = []
    if runs:
        days = (
            select(
                BillingDay.key_id,
                func.nullif(BillingDay.tier, snapshot.NO_TIER).label("tier"),
                func.sum(BillingDay.hours).label("hours"),
                func.sum(BillingDay.requests).label("n"),
                func.sum(BillingDay.billable).label("billable"),
            )
            .where(or_(*(and_(BillingDay.day >= lo, BillingDay.day < hi) for lo, hi in runs)))
            .group_by(BillingDay.key_id, BillingDay.tier)
        )
        if owner_id is not None:
            days = days.where(BillingDay.key_id.in_(keys))
        parts.append(days)
    if gaps:
        hours = (
            select(
                UsageRollup.key_id,
                UsageRollup.tier,
                func.count(literal(1)).label("hours"),
                func.sum(UsageRollup.count).label("n"),
                func.sum(BILLABLE).label("billable"),
            )
            .where(
                UsageRollup.granularity == "hour",
                or_(*(and_(UsageRollup.bucket >= lo, UsageRollup.bucket < hi) for lo, hi in gaps)),
            )
            .group_by(UsageRollup.key_id, UsageRollup.tier)
        )
        if owner_id is not None:
            # The owner's keys: each a range of the roll-up's primary key (key, granularity,
            # bucket), where the owner_id index would visit every minute row of the owner.
            hours = hours.where(UsageRollup.key_id.in_(keys))
        parts.append(hours)
    sub = (union_all(*parts) if len(parts) > 1 else parts[0]).subquery()
    return (
        select(
            ApiKey.user_id,
            User.email,
            ApiKey.public_id,
            ApiKey.name,
            # Rows written before the tier was recorded bill at the owner's current tier.
            func.coalesce(sub.c.tier, User.tier),
            sub.c.hours,
            sub.c.n,
            sub.c.billable,
        )
        .join(ApiKey, ApiKey.id == sub.c.key_id)
        .join(User, User.id == ApiKey.user_id)
        .where(ApiKey.test.is_(False))  # test keys are never billed
    )


def _merged(rows: Iterable[Any]) -> list[Line]:
    """One line per key and tier: the snapshot and hour parts may each give one."""
    merged: dict[tuple[str, str], list[Any]] = {}
    for owner, email, pid, name, t, hours, n, billable in rows:
        row = merged.setdefault((pid, t), [owner, email, pid, name, t, 0, 0, 0])
        row[5] += int(hours)
        row[6] += int(n or 0)
        row[7] += int(billable or 0)
    out = [Line(int(r[0]), r[1], r[2], r[3], r[4], r[5], r[6], r[7]) for r in merged.values()]
    out.sort(key=lambda x: (x.email, x.key_id, x.tier))
    return out


# ------------------------------------------------------------------ cloud events

EVENT_TYPE = "com.keyledger.api.requests"
EVENT_SOURCE = "keyledger/usage"


def _exported_hours(start: datetime, end: datetime) -> tuple[Any, ...]:
    """The hour roll-ups a CloudEvents export of [start, end) sends, one event each."""
    return (
        ApiKey.test.is_(False),  # a meter bills what it is sent: test keys are not
        UsageRollup.granularity == "hour",
        UsageRollup.bucket >= start,
        UsageRollup.bucket < end,
    )


def cloudevents_count(session: Session, start: datetime, end: datetime) -> int:
    """How many events cloudevents() yields for [start, end): an export's progress."""
    query = (
        select(func.count())
        .select_from(UsageRollup)
        .join(ApiKey, ApiKey.id == UsageRollup.key_id)
        .where(*_exported_hours(start, end))
    )
    return int(session.scalar(query) or 0)


def cloudevents(session: Session, start: datetime, end: datetime) -> Iterator[dict[str, Any]]:
    """CloudEvents 1.0, one per key and hour of [start, end), oldest first.

    The id is the key's public id and the hour, so a re-export (or an overlapping one)
    carries the same ids and a metering service that deduplicates on (source, id) as
    OpenMeter and Lago do counts each hour once. The subject is the account
    (`user:<id>`): the customer a meter groups by. Export closed hours: an hour still
    being written would be deduplicated against its earlier, smaller count.
    """
    tier = _tier_expr().label("tier")
    query = (
        select(
            UsageRollup.bucket,
            UsageRollup.owner_id,
            ApiKey.public_id,
            tier,
            UsageRollup.count,
            BILLABLE.label("billable"),
            UsageRollup.status_429,
            UsageRollup.status_5xx,
        )
        .join(ApiKey, ApiKey.id == UsageRollup.key_id)
        .join(User, User.id == UsageRollup.owner_id)
        .where(*_exported_hours(start, end))
        .order_by(UsageRollup.bucket, ApiKey.public_id)
        .execution_options(yield_per=5000)
    )
    for bucket, owner, pid, t, n, billable, n429, n5xx in session.execute(query):
        hour = bucket.astimezone(UTC)
        yield {
            "specversion": "1.0",
            "type": EVENT_TYPE,
            "source": EVENT_SOURCE,
            "subject": f"user:{owner}",
            "id": f"{pid}-{hour:%Y%m%dT%H}",
            "time": times.iso(hour),
            "datacontenttype": "application/json",
            "data": {
                "key_id": pid,
                "tier": t,
                "period": "PT1H",
                "requests": int(n),
                "billable": int(billable),
                "rate_limited": int(n429),
                "errors_5xx": int(n5xx),
            },
        }
