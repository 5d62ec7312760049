"""Times, once: every page, answer, chart, export and command shows and reads them here.

Why one module: Keyledger states every time in UTC, 24-hour, and a time written one
way on a page and another in a CSV or a chart reads as two different moments. Months
(billing) and buckets (usage charts) are UTC too.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

# What the `utc` Jinja filter shows, by name (templates never write strftime codes): a
# slice of `isoformat(" ", timespec)`, "YYYY-MM-DD HH:MM:SS.ffffff": the same text as
# strftime at a fraction of its cost (a list shows several times a row; docs/performance.md,
# "The keys page").
DISPLAY = {
    "date": ("minutes", 0, 10),  # 2026-11-25
    "time": ("minutes", 11, 16),  # 10:00
    "minute": ("minutes", 0, 16),  # 2026-11-25 10:00
    "second": ("seconds", 0, 19),  # 2026-11-25 10:00:00
    "micro": ("microseconds", 0, 26),  # 2026-11-25 10:00:00.000000
    "sec": ("seconds", 17, 19),  # 00
}
STEP = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}
MONTH_HINT = "a month is YYYY-MM, e.g. 2026-11"
_MONTH = re.compile(r"[0-9]{4}-[0-9]{2}")


def utc(at: datetime) -> datetime:
    """`at` in UTC; a naive value is read as UTC (how SQLite hands columns back)."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def now() -> datetime:
    return datetime.now(UTC)


def iso(at: datetime) -> str:
    """ISO 8601 with a Z, as every JSON answer writes a time: 2026-11-25T10:00:00Z."""
    return utc(at).isoformat().replace("+00:00", "Z")


def iso_micro(at: datetime) -> str:
    """ISO 8601 with microseconds always written (sortable text: audit exports)."""
    return utc(at).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def compact(at: datetime) -> str:
    """20261125T100000Z: a time inside a file name."""
    return utc(at).strftime("%Y%m%dT%H%M%SZ")


def iso_or_none(at: datetime | None) -> str | None:
    return None if at is None else iso(at)


def display(at: datetime | None, style: str = "minute") -> str:
    """A time for people, in UTC, 24-hour (the templates' `utc` filter); '' for None."""
    if at is None:
        return ""
    timespec, start, end = DISPLAY[style]
    return utc(at).isoformat(" ", timespec)[start:end]


def day_text(at: datetime) -> str:
    """'YYYY-MM-DD' of the UTC day holding `at`."""
    return utc(at).strftime("%Y-%m-%d")


def parse_iso(text: str) -> datetime:
    """An ISO 8601 time, 'Z' accepted; naive stays naive (the caller decides what
    that means). ValueError when it is not one."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def parse_form_time(text: str) -> datetime:
    """What a filter form sends: YYYY-MM-DD, or with THH:MM[:SS], read as UTC.
    ValueError for anything else."""
    for fmt in ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise ValueError("a date (YYYY-MM-DD) or date and time (UTC)")


def form_value(at: datetime) -> str:
    """`at` as a datetime-local field shows it (YYYY-MM-DDTHH:MM, seconds when set): a
    bare date in a link would leave the field blank and be lost on the next filter."""
    at = utc(at)
    return at.strftime("%Y-%m-%dT%H:%M:%S" if at.second else "%Y-%m-%dT%H:%M")


# -------------------------------------------------------------------------- buckets


def floor(at: datetime, granularity: str) -> datetime:
    """Start of the UTC minute, hour or day holding `at`."""
    at = utc(at)
    if granularity == "minute":
        return at.replace(second=0, microsecond=0)
    if granularity == "hour":
        return at.replace(minute=0, second=0, microsecond=0)
    if granularity == "day":
        return at.replace(hour=0, minute=0, second=0, microsecond=0)
    raise ValueError(f"granularity must be one of {', '.join(STEP)}")


def ceil(at: datetime, granularity: str) -> datetime:
    """End of the bucket holding `at`, or `at` itself when it starts one."""
    start = floor(at, granularity)
    return start if start == utc(at) else start + STEP[granularity]


# --------------------------------------------------------------------------- months


def month_of(at: datetime) -> str:
    """'YYYY-MM' of the UTC month holding `at`."""
    return utc(at).strftime("%Y-%m")


def month_start(value: str) -> datetime:
    """'2026-11' -> 2026-11-01T00:00Z; ValueError (MONTH_HINT) for anything else."""
    if not _MONTH.fullmatch(value):
        raise ValueError(MONTH_HINT)
    try:
        return datetime.strptime(value, "%Y-%m").replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(MONTH_HINT) from None


def next_month(start: datetime) -> datetime:
    """The first instant of the month after the one `start` opens."""
    if start.month == 12:
        return start.replace(year=start.year + 1, month=1)
    return start.replace(month=start.month + 1)


def month_range(value: str) -> tuple[datetime, datetime]:
    """'2026-11' -> [2026-11-01, 2026-12-01) in UTC; ValueError says the format."""
    start = month_start(value)
    return start, next_month(start)


def recent_months(at: datetime, n: int) -> list[str]:
    """The month holding `at` and the n-1 before it, newest first."""
    at = utc(at)
    y, m = at.year, at.month
    out = []
    for _ in range(n):
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y - 1, 12) if m == 1 else (y, m - 1)
    return out
