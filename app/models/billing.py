"""Billing snapshot: each closed day's billed use per key and tier (app/billing/snapshot.py).

A month's billing would otherwise sum every hour row of the month; these rows hold
exactly what that sum derives from one day's hour rows, so a month reads 30 rows a key.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models._types import UTCDateTime


class BillingDay(db.Model):
    """One key's hour rows of one UTC day at one recorded tier, summed."""

    __tablename__ = "billing_day"

    key_id: Mapped[int] = mapped_column(ForeignKey("api_key.id"), primary_key=True)
    # UTC midnight. Indexed: a month across every key reads a range of days.
    day: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True, index=True)
    # The tier recorded with the hours, "" where none was (rows older than the column):
    # those bill at the owner's tier when read, as the hour rows do, so a later tier
    # change reaches them in the snapshot too. "" because a primary key has no NULL.
    tier: Mapped[str] = mapped_column(String(16), primary_key=True)
    hours: Mapped[int] = mapped_column(Integer)  # hour rows with use at this tier
    requests: Mapped[int] = mapped_column(BigInteger)
    billable: Mapped[int] = mapped_column(BigInteger)


class BillingDayClosed(db.Model):
    """A day whose billing_day rows are written (a day without use has none)."""

    __tablename__ = "billing_day_closed"

    day: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class TierPeriod(db.Model):
    """From `since` until the account's next row, the account was at `tier`.

    The account's plan history: billing prorates a month's base price and allowance by
    the time at each tier (docs/usage.md, "Billing"). Written with the account and with
    each tier change (app.accounts), never changed afterwards.
    """

    __tablename__ = "tier_period"
    __table_args__ = (Index("ix_tier_period_user_since", "user_id", "since"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"))
    since: Mapped[datetime] = mapped_column(UTCDateTime)
    tier: Mapped[str] = mapped_column(String(16))
