"""Usage: raw events (kept for a retention period) and roll-ups (kept for billing).

Roll-ups are additive on purpose: every column is a sum, so concurrent flushes from
several workers merge with `INSERT ... ON CONFLICT DO UPDATE SET n = n + excluded.n`
and the day view is a sum of hours. Latency percentiles come from a sparse log-scale
histogram (`usage_latency_bin`), also a sum, because averages of p95s mean nothing.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, SmallInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models._types import UTCDateTime

_BIGID = BigInteger().with_variant(Integer, "sqlite")

# "day" rows (no latency bins) serve the admin-wide charts: a month across every key
# is 30 rows a key instead of 720.
GRANULARITIES = ("minute", "hour", "day")


class UsageBatch(db.Model):
    """A flushed batch's id, written in the batch's own transaction: a batch retried
    after its commit went unanswered (the database stalled between committing and
    saying so) finds its id and is not written twice. Pruned after a day."""

    __tablename__ = "usage_batch"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    written_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class UsageRecord(db.Model):
    """One key-authenticated request, as the recorder saw it. Pruned after retention."""

    __tablename__ = "usage_event"
    __table_args__ = (Index("ix_usage_event_key_id_at", "key_id", "at"),)

    id: Mapped[int] = mapped_column(_BIGID, primary_key=True)
    key_id: Mapped[int] = mapped_column(ForeignKey("api_key.id"))
    owner_id: Mapped[int] = mapped_column(Integer, index=True)
    endpoint: Mapped[str] = mapped_column(String(200))
    method: Mapped[str] = mapped_column(String(16))
    status: Mapped[int] = mapped_column(SmallInteger)
    response_ms: Mapped[float] = mapped_column(Float)
    client_ip: Mapped[str | None] = mapped_column(String(45), nullable=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class UsageRollup(db.Model):
    """Counts per key per minute or hour; `bucket` is the start of the period (UTC)."""

    __tablename__ = "usage_rollup"
    # Admin-wide charts and billing read one granularity over a time range, all keys.
    __table_args__ = (Index("ix_usage_rollup_granularity_bucket", "granularity", "bucket"),)

    key_id: Mapped[int] = mapped_column(ForeignKey("api_key.id"), primary_key=True)
    granularity: Mapped[str] = mapped_column(String(8), primary_key=True)
    bucket: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    owner_id: Mapped[int] = mapped_column(Integer, index=True)
    count: Mapped[int] = mapped_column(BigInteger, default=0)
    status_2xx: Mapped[int] = mapped_column(BigInteger, default=0)
    status_3xx: Mapped[int] = mapped_column(BigInteger, default=0)
    status_4xx: Mapped[int] = mapped_column(BigInteger, default=0)
    status_5xx: Mapped[int] = mapped_column(BigInteger, default=0)
    # Anything outside 200-599 (a service reporting 1xx or nonsense) counts here.
    status_other: Mapped[int] = mapped_column(BigInteger, default=0)
    # Parts of status_4xx the dashboards split out: refused credentials and rate limits
    # (429s are not billable, and a security figure).
    status_401_403: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    status_429: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    latency_sum_ms: Mapped[float] = mapped_column(Float, default=0.0)
    # The owner's tier when the period's first events were written: billing prices each
    # hour at the tier it was used under. NULL for rows written before it was recorded.
    tier: Mapped[str | None] = mapped_column(String(16), nullable=True)


class UsageLatencyBin(db.Model):
    """How many requests of one roll-up fell into one latency bin (sparse histogram).

    Granularity minute, hour, and day (a day's histogram for month charts; there is no
    day row in usage_rollup, whose day views sum hours).
    """

    __tablename__ = "usage_latency_bin"

    key_id: Mapped[int] = mapped_column(ForeignKey("api_key.id"), primary_key=True)
    granularity: Mapped[str] = mapped_column(String(8), primary_key=True)
    bucket: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    bin: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, default=0)


class UsageTopRollup(db.Model):
    """Requests per key per hour and per day by endpoint and by client IP ("top" lists).

    `dim` is "endpoint" or "ip"; `value` the endpoint (cut like the raw event's) or the
    address; `granularity` "hour" or "day". A range's top list sums its whole days and
    the hours at its edges.
    """

    __tablename__ = "usage_top_rollup"

    key_id: Mapped[int] = mapped_column(ForeignKey("api_key.id"), primary_key=True)
    dim: Mapped[str] = mapped_column(String(8), primary_key=True)
    granularity: Mapped[str] = mapped_column(String(8), primary_key=True)
    bucket: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    value: Mapped[str] = mapped_column(String(200), primary_key=True)
    owner_id: Mapped[int] = mapped_column(Integer, index=True)
    count: Mapped[int] = mapped_column(BigInteger, default=0)
    # Answers of 400 and above among them.
    errors: Mapped[int] = mapped_column(BigInteger, default=0)
