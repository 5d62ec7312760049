"""An account's month as a bill: the plan charged once per account, prorated by the days
at each tier; its included requests pooled over the account's keys; the overage priced
on that pool. Per-key lines (app.billing.lines) remain as the breakdown.

`/billing`, `/admin/billing` and every export read `bill()`, so they agree to the cent.

Days: each UTC day of the month from the account's creation day through the day it was
closed or disabled counts once, at the tier the account held at the day's end (for the
rest of the current month, its current tier: the month's plan is due in full).
Use: hours are priced at the tier recorded with them, and the account's use at one tier
is one pool against that tier's share of the allowance. A month at one tier (nearly
every month) is one charge; a tier change splits it into a charge per tier.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from app.billing import CENT, Line, Plan, Plans, lines
from app.billing.snapshot import DAY, day_of
from app.config import TIERS
from app.models import TierPeriod, User
from app.times import month_of, month_range


@dataclass(frozen=True)
class Charge:
    """One account's month at one tier: its days' share of the plan, and the pool of its
    keys' use at that tier priced against it."""

    owner_id: int
    email: str
    tier: str
    days: int  # days of the month at this tier
    month_days: int
    requests: int  # pooled over the account's keys
    billable: int
    allowance: int  # the plan's included requests for those days
    overage: int
    base: Decimal  # the plan's base price for those days
    overage_amount: Decimal
    amount: Decimal  # base + overage_amount, each rounded to the cent
    currency: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.owner_id,
            "email": self.email,
            "tier": self.tier,
            "days": self.days,
            "month_days": self.month_days,
            "requests": self.requests,
            "billable": self.billable,
            "allowance": self.allowance,
            "overage": self.overage,
            "base": str(self.base),
            "overage_amount": str(self.overage_amount),
            "amount": str(self.amount),
            "currency": self.currency,
        }


def charge(
    plan: Plan,
    *,
    owner_id: int,
    email: str,
    days: int,
    month_days: int,
    requests: int,
    billable: int,
    currency: str,
) -> Charge:
    """`plan` for `days` of a `month_days` month, and a pool of use at its tier."""
    share = Decimal(days) / Decimal(month_days)
    allowance = int((plan.included * share).to_integral_value(ROUND_HALF_UP))
    overage = max(0, billable - allowance)
    base = (plan.base * share).quantize(CENT, ROUND_HALF_UP)
    over = (plan.per_1000 * overage / 1000).quantize(CENT, ROUND_HALF_UP)
    return Charge(
        owner_id,
        email,
        plan.tier,
        days,
        month_days,
        requests,
        billable,
        allowance,
        overage,
        base,
        over,
        base + over,
        currency,
    )


@dataclass(frozen=True)
class Totals:
    requests: int
    billable: int
    allowance: int
    overage: int
    amount: Decimal
    currency: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "billable": self.billable,
            "allowance": self.allowance,
            "overage": self.overage,
            "amount": str(self.amount),
            "currency": self.currency,
        }


@dataclass(frozen=True)
class Bill:
    """A month's charges (per account and tier) and key lines (per key and tier)."""

    currency: str
    charges: list[Charge]
    lines: list[Line] = field(default_factory=list)

    def totals(self) -> Totals:
        c = self.charges
        return Totals(
            sum(x.requests for x in c),
            sum(x.billable for x in c),
            sum(x.allowance for x in c),
            sum(x.overage for x in c),
            sum((x.amount for x in c), Decimal("0.00")),
            self.currency,
        )

    def accounts(self) -> list[tuple[int, str, list[Charge], list[Line]]]:
        """(owner id, email, charges, key lines) per account, by email."""
        keys: dict[int, list[Line]] = defaultdict(list)
        for x in self.lines:
            keys[x.owner_id].append(x)
        out: dict[int, tuple[int, str, list[Charge], list[Line]]] = {}
        for c in self.charges:
            out.setdefault(c.owner_id, (c.owner_id, c.email, [], keys[c.owner_id]))[2].append(c)
        return list(out.values())


def tier_days(
    periods: list[tuple[datetime, str]],
    current: str,
    created: datetime,
    ended: datetime | None,
    start: datetime,
    end: datetime,
) -> dict[str, int]:
    """Days of [start, end) per tier for an account created at `created` and closed or
    disabled at `ended`; `periods` its (since, tier) rows, oldest first."""
    since = [at for at, _ in periods]
    out: dict[str, int] = {}
    day = max(start, day_of(created))
    last = day_of(ended) if ended is not None else None
    while day < end and (last is None or day <= last):
        i = bisect_left(since, day + DAY)  # periods begun before the day's end
        tier = periods[i - 1][1] if i else (periods[0][1] if periods else current)
        out[tier] = out.get(tier, 0) + 1
        day += DAY
    return out


def _ended(user: Any) -> datetime | None:
    ends = [at for at in (user.closed_at, user.disabled_at) if at is not None]
    return min(ends) if ends else None


def bill(
    session: Session,
    plan_set: Plans,
    start: datetime,
    end: datetime,
    *,
    owner_id: int | None = None,
    now: datetime | None = None,
) -> Bill:
    """The bill of [start, end) (a month): every account's, or one account's (`owner_id`).

    Across every account, an account without a charge (a basic plan and no use) is left
    out; one account's bill always has its charges for the days it existed.
    """
    now = now or datetime.now(UTC)
    key_lines = lines(session, start, end, owner_id=owner_id, now=now)
    cols = (User.id, User.email, User.tier, User.created_at, User.closed_at, User.disabled_at)
    query = select(*cols).where(User.created_at < end)
    if owner_id is not None:
        users = session.execute(select(*cols).where(User.id == owner_id)).all()
    else:
        live = or_(User.closed_at.is_(None), User.closed_at >= start)
        enabled = or_(User.disabled_at.is_(None), User.disabled_at >= start)
        users = session.execute(query.where(and_(live, enabled))).all()
        missing = sorted({x.owner_id for x in key_lines} - {u.id for u in users})
        for i in range(0, len(missing), 500):  # use from outside the account's days
            chunk = missing[i : i + 500]
            users += session.execute(select(*cols).where(User.id.in_(chunk))).all()
    periods: dict[int, list[tuple[datetime, str]]] = defaultdict(list)
    pq = select(TierPeriod.user_id, TierPeriod.since, TierPeriod.tier).where(TierPeriod.since < end)
    if owner_id is not None:
        pq = pq.where(TierPeriod.user_id == owner_id)
    for uid, since, tier in session.execute(pq.order_by(TierPeriod.user_id, TierPeriod.since)):
        periods[uid].append((since, tier))
    pools: dict[tuple[int, str], list[int]] = defaultdict(lambda: [0, 0])
    for x in key_lines:
        pool = pools[(x.owner_id, x.tier)]
        pool[0] += x.requests
        pool[1] += x.billable
    month_days = (end - start) // DAY
    charges: list[Charge] = []
    for u in sorted(users, key=lambda u: u.email):
        days = tier_days(periods[u.id], u.tier, u.created_at, _ended(u), start, end)
        tiers = set(days) | {t for (o, t) in pools if o == u.id}
        mine = [
            charge(
                plan_set[t],
                owner_id=u.id,
                email=u.email,
                days=days.get(t, 0),
                month_days=month_days,
                requests=pools[(u.id, t)][0] if (u.id, t) in pools else 0,
                billable=pools[(u.id, t)][1] if (u.id, t) in pools else 0,
                currency=plan_set.currency,
            )
            for t in sorted(tiers, key=_tier_order)
        ]
        if owner_id is None and not any(c.amount or c.requests for c in mine):
            continue
        charges += mine
    return Bill(plan_set.currency, charges, key_lines)


def _tier_order(tier: str) -> int:
    return TIERS.index(tier) if tier in TIERS else len(TIERS)


@dataclass(frozen=True)
class Projection:
    """The current month for one account: so far, and at this pace by month end."""

    month: str
    elapsed_hours: float
    month_hours: int
    billable: int
    allowance: int
    projected_billable: int
    projected_amount: Decimal
    amount: Decimal
    currency: str

    @property
    def used_share(self) -> float:
        return self.billable / self.allowance if self.allowance else 0.0


def project(
    session: Session, plan_set: Plans, owner: User, now: datetime
) -> tuple[Projection, Bill]:
    """This month's bill for `owner` and a straight-line projection to month end.

    The rest of the month is assumed to go like the account's hours so far in it, at
    the account's current tier.
    """
    start, end = month_range(month_of(now))
    month_bill = bill(session, plan_set, start, end, owner_id=owner.id, now=now)
    total = month_bill.totals()
    begin = max(start, day_of(owner.created_at))
    elapsed = max((now - begin) / timedelta(hours=1), 1.0)
    month_hours = int((end - begin) / timedelta(hours=1))
    projected = max(total.billable, round(total.billable * month_hours / elapsed))
    extra = projected - total.billable
    projected_amount = Decimal("0.00")
    for c in month_bill.charges:
        if c.tier == owner.tier and extra:
            c = charge(
                plan_set[c.tier],
                owner_id=c.owner_id,
                email=c.email,
                days=c.days,
                month_days=c.month_days,
                requests=c.requests + extra,
                billable=c.billable + extra,
                currency=c.currency,
            )
        projected_amount += c.amount
    return (
        Projection(
            month=month_of(now),
            elapsed_hours=elapsed,
            month_hours=month_hours,
            billable=total.billable,
            allowance=total.allowance,
            projected_billable=projected,
            projected_amount=projected_amount,
            amount=total.amount,
            currency=plan_set.currency,
        ),
        month_bill,
    )
