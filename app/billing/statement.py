"""An account's month as a bill: the plan charged once per account, prorated by the time
at each tier; its included requests pooled over the account's keys; the overage priced
on that pool. Per-key lines (app.billing.lines) remain as the breakdown.

`/billing`, `/admin/billing` and every export read `bill()`, so they agree to the cent.

Time: the account is billed from the start of its creation day through the end of the
day it was closed or disabled, and within that span each tier for exactly the time it
held (the creation day's first hours at the tier it was created with; the rest of the
current month at its current tier: the month's plan is due in full). A tier changed at
10:00 has 10 hours, not 0 days (docs/decisions.md, "Proration by exact time").
Use: hours are priced at the tier recorded with them, and the account's use at one tier
is one pool against that tier's share of the allowance. A month at one tier (nearly
every month) is one charge; a tier change splits it into a charge per tier.
"""

from __future__ import annotations

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
    """One account's month at one tier: its time's share of the plan, and the pool of its
    keys' use at that tier priced against it."""

    owner_id: int
    email: str
    tier: str
    time: timedelta  # the time of the month at this tier
    month: timedelta
    requests: int  # pooled over the account's keys
    billable: int
    allowance: int  # the plan's included requests for that time
    overage: int
    base: Decimal  # the plan's base price for that time
    overage_amount: Decimal
    amount: Decimal  # base + overage_amount, each rounded to the cent
    currency: str

    @property
    def days(self) -> Decimal:
        """The time at this tier in days, to the hundredth (half up, so a month's charges
        add up to its days), and never 0 for a tier that held for any time; 30 for a
        whole 30-day month."""
        days = (Decimal(_us(self.time)) / _US_A_DAY).quantize(Decimal("0.01"), ROUND_HALF_UP)
        if not days and self.time:
            days = Decimal("0.01")
        return days.quantize(Decimal(1)) if days == days.to_integral_value() else days

    @property
    def month_days(self) -> int:
        return self.month // DAY

    def to_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.owner_id,
            "email": self.email,
            "tier": self.tier,
            "days": str(self.days),
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


_US_A_DAY = DAY // timedelta(microseconds=1)


def _us(t: timedelta) -> int:
    return t // timedelta(microseconds=1)


def charge(
    plan: Plan,
    *,
    owner_id: int,
    email: str,
    time: timedelta,
    month: timedelta,
    requests: int,
    billable: int,
    currency: str,
) -> Charge:
    """`plan` for `time` of a `month`, and a pool of use at its tier.

    The allowance is rounded up to a whole request, in the customer's favour: a tier in
    force for any time includes at least one request."""
    held, whole = _us(time), _us(month)
    allowance = -(-plan.included * held // whole)
    overage = max(0, billable - allowance)
    base = (plan.base * held / whole).quantize(CENT, ROUND_HALF_UP)
    over = (plan.per_1000 * overage / 1000).quantize(CENT, ROUND_HALF_UP)
    return Charge(
        owner_id,
        email,
        plan.tier,
        time,
        month,
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


def tier_time(
    periods: list[tuple[datetime, str]],
    current: str,
    created: datetime,
    ended: datetime | None,
    start: datetime,
    end: datetime,
) -> dict[str, timedelta]:
    """The time of [start, end) per tier, exactly, for an account created at `created`
    and closed or disabled at `ended`; `periods` its (since, tier) rows, oldest first.

    Billed from the start of the creation day through the end of the closing day; the
    hours of the creation day before the account existed count at the tier it had at
    creation (the last of the rows written at that instant)."""
    lo = max(start, day_of(created))
    hi = min(end, day_of(ended) + DAY) if ended is not None else end
    out: dict[str, timedelta] = defaultdict(timedelta)
    if lo >= hi:
        return {}
    tier = current
    if periods:
        first = periods[0][0]
        tier = [t for at, t in periods if at == first][-1]
    at = lo
    for since, new in periods:
        if since >= hi:
            break
        if since > at:
            out[tier] += since - at
            at = since
        tier = new
    out[tier] += hi - at
    return {t: d for t, d in out.items() if d}


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
    pq = pq.order_by(TierPeriod.user_id, TierPeriod.since, TierPeriod.id)
    for uid, since, tier in session.execute(pq):
        periods[uid].append((since, tier))
    pools: dict[tuple[int, str], list[int]] = defaultdict(lambda: [0, 0])
    for x in key_lines:
        pool = pools[(x.owner_id, x.tier)]
        pool[0] += x.requests
        pool[1] += x.billable
    month = end - start
    charges: list[Charge] = []
    for u in sorted(users, key=lambda u: u.email):
        held = tier_time(periods[u.id], u.tier, u.created_at, _ended(u), start, end)
        tiers = set(held) | {t for (o, t) in pools if o == u.id}
        mine = [
            charge(
                plan_set[t],
                owner_id=u.id,
                email=u.email,
                time=held.get(t, timedelta(0)),
                month=month,
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
                time=c.time,
                month=c.month,
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
