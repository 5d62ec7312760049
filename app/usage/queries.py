"""Chart and billing queries. They read roll-ups only, never raw events.

Minute series read minute roll-ups, hour series hour roll-ups, and day series sum the
hour roll-ups of each UTC day (counts and histograms are sums, so this is exact).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import ApiKey, UsageLatencyBin, UsageRollup
from app.times import STEP, ceil, floor, iso
from app.usage.histogram import quantile

GRANULARITIES = tuple(STEP)
# The roll-up each granularity reads.
SOURCE = {"minute": "minute", "hour": "hour", "day": "hour"}
STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx", "other")
MAX_BUCKETS = 1500  # 25 hours of minutes, 62 days of hours, 4 years of days


class UsageQueryError(ValueError):
    """The range or granularity asked for cannot be answered; the message says why."""


@dataclass
class Bucket:
    start: datetime
    count: int = 0
    status: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUS_CLASSES, 0))
    latency_sum_ms: float = 0.0
    bins: dict[int, int] = field(default_factory=dict)

    @property
    def latency_avg_ms(self) -> float | None:
        return self.latency_sum_ms / self.count if self.count else None

    @property
    def latency_p95_ms(self) -> float | None:
        return quantile(self.bins, 0.95)

    def to_dict(self) -> dict[str, Any]:
        avg, p95 = self.latency_avg_ms, self.latency_p95_ms
        return {
            "start": iso(self.start),
            "count": self.count,
            "status": dict(self.status),
            "latency_avg_ms": None if avg is None else round(avg, 3),
            "latency_p95_ms": None if p95 is None else round(p95, 3),
        }


def bucket_range(start: datetime, end: datetime, granularity: str) -> tuple[datetime, datetime]:
    """[start, end) widened to whole buckets; refuses what a chart could not show."""
    if granularity not in GRANULARITIES:
        raise UsageQueryError(f"granularity must be one of {', '.join(GRANULARITIES)}")
    if start.tzinfo is None or end.tzinfo is None:
        raise UsageQueryError("times need a timezone (use UTC, e.g. 2026-11-25T10:00:00Z)")
    lo, hi = floor(start, granularity), ceil(end, granularity)
    if hi <= lo:
        raise UsageQueryError("'to' must be after 'from'")
    if (hi - lo) / STEP[granularity] > MAX_BUCKETS:
        raise UsageQueryError(
            f"that range holds more than {MAX_BUCKETS} {granularity} buckets; "
            "choose a coarser granularity or a shorter range"
        )
    return lo, hi


def _key_id(key: ApiKey | int) -> int:
    return key if isinstance(key, int) else key.id


def series(
    session: Session, key: ApiKey | int, start: datetime, end: datetime, granularity: str
) -> list[Bucket]:
    """Every bucket of [start, end) in order, empty ones included, for one key."""
    lo, hi = bucket_range(start, end, granularity)
    key_id, source = _key_id(key), SOURCE[granularity]
    buckets: dict[datetime, Bucket] = {}
    t = lo
    while t < hi:
        buckets[t] = Bucket(t)
        t += STEP[granularity]

    rows = session.execute(
        select(UsageRollup).where(
            UsageRollup.key_id == key_id,
            UsageRollup.granularity == source,
            UsageRollup.bucket >= lo,
            UsageRollup.bucket < hi,
        )
    ).scalars()
    for r in rows:
        b = buckets[floor(r.bucket, granularity)]
        b.count += r.count
        b.status["2xx"] += r.status_2xx
        b.status["3xx"] += r.status_3xx
        b.status["4xx"] += r.status_4xx
        b.status["5xx"] += r.status_5xx
        b.status["other"] += r.status_other
        b.latency_sum_ms += r.latency_sum_ms

    bins = session.execute(
        select(UsageLatencyBin.bucket, UsageLatencyBin.bin, UsageLatencyBin.count).where(
            UsageLatencyBin.key_id == key_id,
            UsageLatencyBin.granularity == source,
            UsageLatencyBin.bucket >= lo,
            UsageLatencyBin.bucket < hi,
        )
    )
    for at, b_index, n in bins:
        hist = buckets[floor(at, granularity)].bins
        hist[b_index] = hist.get(b_index, 0) + n
    return list(buckets.values())


def summary(buckets: list[Bucket]) -> Bucket:
    """One bucket for a whole series: totals, average and p95 over the range."""
    total = Bucket(buckets[0].start if buckets else datetime.now(UTC))
    for b in buckets:
        total.count += b.count
        total.latency_sum_ms += b.latency_sum_ms
        for cls, n in b.status.items():
            total.status[cls] += n
        for i, n in b.bins.items():
            total.bins[i] = total.bins.get(i, 0) + n
    return total
