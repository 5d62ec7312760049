"""Usage analytics for the dashboard and the key page: outcome series, top lists, peaks,
key nudges, recent failures and the request log.

Charts read roll-ups only (usage_rollup, usage_latency_bin, usage_top_rollup), summed in
SQL per bucket, so an answer costs the number of buckets, not the number of requests.
Only the request log reads raw events: one key, through ix_usage_event_key_id_at, with a
limit. Every function takes a session and plain values; `key_ids=None` means every key
(admin-wide figures), a list means just those keys.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from app import dialects, outcomes
from app.keys import lifecycle
from app.models import ApiKey, AuditEvent, UsageLatencyBin, UsageRecord, UsageRollup, UsageTopRollup
from app.outcomes import CHART_CLASSES
from app.times import STEP, floor, iso, parse_iso, utc
from app.usage.histogram import quantile, upper_edge
from app.usage.queries import SOURCE, UsageQueryError, bucket_range

# The outcome split every chart shows (app/outcomes.py names, labels and colours them).
OUTCOMES = tuple(CHART_CLASSES)
OUTCOME_LABELS = {c.name: c.label for c in CHART_CLASSES.values()}
# range name -> (length, granularity); the current bucket is the last one.
RANGES: dict[str, tuple[timedelta, str]] = {
    "hour": (timedelta(hours=1), "minute"),
    "day": (timedelta(hours=24), "hour"),
    "week": (timedelta(days=7), "hour"),
    "month": (timedelta(days=30), "day"),
}
RANGE_TEXT = {
    "hour": "last hour",
    "day": "last 24 hours",
    "week": "last 7 days",
    "month": "last 30 days",
    "custom": "chosen period",
}
MAX_CUSTOM = timedelta(days=400)
TOP_N = 10
UNUSED_DAYS = 30
LOG_PAGE = 25
# Filters of the request log: a status class, or one exact status.
LOG_FILTERS: dict[str, tuple[int, int]] = {
    "2xx": (200, 299),
    "3xx": (300, 399),
    "4xx": (400, 499),
    "5xx": (500, 599),
}


@dataclass(frozen=True)
class Window:
    """A chart's period: [start, end) in whole buckets of `granularity`."""

    name: str  # a RANGES name or "custom"
    start: datetime
    end: datetime
    granularity: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "range": self.name,
            "range_text": RANGE_TEXT[self.name],
            "granularity": self.granularity,
            "from": iso(self.start),
            "to": iso(self.end),
        }


_TIME_TEXT = re.compile(
    r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?(Z|[+-]\d{2}:\d{2})?"
)


def _parse_time(text: str, name: str) -> datetime:
    try:
        if not _TIME_TEXT.fullmatch(text):
            raise ValueError
        at = parse_iso(text)
    except ValueError:
        raise UsageQueryError(f"'{name}' must be a date and time, e.g. 2026-11-25T10:00") from None
    # A datetime-local field sends no zone; the pages say times are UTC.
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def window(range_name: str | None, start: str | None, end: str | None, now: datetime) -> Window:
    """The window a request asks for: a preset range, or a custom from/to (UTC).

    A custom window gets minutes up to 6 hours, hours up to 10 days, days beyond, so a
    chart never has more than a few hundred bars.
    """
    if start or end or range_name == "custom":
        if not start or not end:
            raise UsageQueryError("a custom range needs both 'from' and 'to'")
        lo, hi = _parse_time(start, "from"), _parse_time(end, "to")
        if hi <= lo:
            raise UsageQueryError("'to' must be after 'from'")
        if hi - lo > MAX_CUSTOM:
            raise UsageQueryError(f"a custom range can span at most {MAX_CUSTOM.days} days")
        span = hi - lo
        granularity = (
            "minute"
            if span <= timedelta(hours=6)
            else "hour"
            if span <= timedelta(days=10)
            else "day"
        )
        lo, hi = bucket_range(lo, hi, granularity)
        return Window("custom", lo, hi, granularity)
    name = range_name or "day"
    if name not in RANGES:
        raise UsageQueryError(f"range must be one of {', '.join([*RANGES, 'custom'])}")
    length, granularity = RANGES[name]
    hi = floor(now, granularity) + STEP[granularity]
    return Window(name, hi - length, hi, granularity)


@dataclass
class OutcomeBucket:
    start: datetime
    count: int = 0
    outcome: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    latency_sum_ms: float = 0.0
    latency_p95_ms: float | None = None  # per bucket, read in SQL from the histogram
    bins: dict[int, int] = field(default_factory=dict)  # only for a total

    def add(self, other: OutcomeBucket) -> None:
        self.count += other.count
        self.latency_sum_ms += other.latency_sum_ms
        for k, n in other.outcome.items():
            self.outcome[k] += n

    @property
    def errors(self) -> int:
        o = self.outcome
        return o["4xx"] + o["401/403"] + o["429"] + o["5xx"]

    def to_dict(self, latency: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "start": iso(self.start),
            "count": self.count,
            "outcome": dict(self.outcome),
        }
        if latency:
            avg = self.latency_sum_ms / self.count if self.count else None
            p95 = quantile(self.bins, 0.95) if self.bins else self.latency_p95_ms
            out["latency_avg_ms"] = None if avg is None else round(avg, 3)
            if self.bins:
                p50 = quantile(self.bins, 0.5)
                out["latency_p50_ms"] = None if p50 is None else round(p50, 3)
            out["latency_p95_ms"] = None if p95 is None else round(p95, 3)
        return out


def _key_filter(column: Any, key_ids: Sequence[int] | None) -> Any:
    return True if key_ids is None else column.in_(list(key_ids))


def _bucket_expr(session: Session, column: Any, granularity: str) -> Any:
    """What to GROUP BY so the database returns one row per chart bucket.

    Minute and hour buckets are the stored ones. A day sums 24 hour roll-ups: grouping
    by the UTC date in SQL returns 30 rows for a month instead of 720 (and, for the
    latency histogram, instead of 720 x bins), which Python would have to fold.
    """
    if granularity != "day":
        return column
    return dialects.utc_day_text(session, column)


def _bucket_start(value: Any) -> datetime:
    if isinstance(value, str):
        return utc(datetime.fromisoformat(value))
    return utc(value)


def outcome_series(
    session: Session, win: Window, key_ids: Sequence[int] | None, *, latency: bool = False
) -> list[OutcomeBucket]:
    """Every bucket of the window, empty ones included, summed over `key_ids`.

    With `latency`, each bucket's p95 comes from its summed histogram (window
    functions: the first bin whose running count reaches 95 % of the bucket's total).
    """
    source = SOURCE[win.granularity]
    buckets: dict[datetime, OutcomeBucket] = {}
    t = win.start
    while t < win.end:
        buckets[t] = OutcomeBucket(t)
        t += STEP[win.granularity]
    if key_ids is not None and not key_ids:
        return list(buckets.values())
    r = UsageRollup
    key = _bucket_expr(session, r.bucket, win.granularity)
    rows = session.execute(
        select(
            key,
            func.sum(r.count),
            func.sum(r.status_2xx),
            func.sum(r.status_3xx),
            func.sum(r.status_4xx),
            func.sum(r.status_401_403),
            func.sum(r.status_429),
            func.sum(r.status_5xx),
            func.sum(r.status_other),
            func.sum(r.latency_sum_ms),
        )
        .where(
            _key_filter(r.key_id, key_ids),
            r.granularity == source,
            r.bucket >= win.start,
            r.bucket < win.end,
        )
        .group_by(key)
    )
    for at, n, s2, s3, s4, s4a, s429, s5, other, lat in rows:
        b = buckets[_bucket_start(at)]
        b.count += int(n or 0)
        o = b.outcome
        o["2xx"] += int(s2 or 0)
        o["3xx"] += int(s3 or 0)
        o["4xx"] += int(s4 or 0) - int(s4a or 0) - int(s429 or 0)
        o["401/403"] += int(s4a or 0)
        o["429"] += int(s429 or 0)
        o["5xx"] += int(s5 or 0)
        o["other"] += int(other or 0)
        b.latency_sum_ms += float(lat or 0.0)
    if latency:
        for at, b_index in _p95_bins(session, win, key_ids):
            buckets[_bucket_start(at)].latency_p95_ms = upper_edge(int(b_index))
    return list(buckets.values())


def _p95_bins(session: Session, win: Window, key_ids: Sequence[int] | None) -> Any:
    lb = UsageLatencyBin
    # Day charts read the day histograms; minute and hour charts their own.
    hist = (
        select(lb.bucket.label("b"), lb.bin.label("bin"), func.sum(lb.count).label("n"))
        .where(
            _key_filter(lb.key_id, key_ids),
            lb.granularity == win.granularity,
            lb.bucket >= win.start,
            lb.bucket < win.end,
        )
        .group_by(lb.bucket, lb.bin)
        .subquery()
    )
    running = select(
        hist.c.b,
        hist.c.bin,
        func.sum(hist.c.n).over(partition_by=hist.c.b, order_by=hist.c.bin).label("seen"),
        func.sum(hist.c.n).over(partition_by=hist.c.b).label("total"),
    ).subquery()
    # Nearest rank: the first bin where seen >= ceil(0.95 total), i.e. 20 seen >= 19 total.
    return session.execute(
        select(running.c.b, func.min(running.c.bin))
        .where(running.c.seen * 20 >= running.c.total * 19)
        .group_by(running.c.b)
    ).all()


def _parts(win: Window) -> list[tuple[str, datetime, datetime]]:
    """The window as (granularity, start, end) pieces: its whole UTC days as day rows,
    the hours at its edges as hour rows (a minute window: its minutes)."""
    if win.granularity == "minute":
        return [("minute", win.start, win.end)]
    lo = floor(win.start, "hour")
    hi = win.end if floor(win.end, "hour") == win.end else floor(win.end, "hour") + STEP["hour"]
    d0 = floor(lo, "day") if floor(lo, "day") == lo else floor(lo, "day") + STEP["day"]
    d1 = floor(hi, "day")
    if d1 <= d0:
        return [("hour", lo, hi)]
    parts = [("hour", lo, d0), ("day", d0, d1), ("hour", d1, hi)]
    return [(g, a, b) for g, a, b in parts if a < b]


def _in_parts(granularity: Any, bucket: Any, parts: list[tuple[str, datetime, datetime]]) -> Any:
    return or_(*(and_(granularity == g, bucket >= a, bucket < b) for g, a, b in parts))


def latency_bins(session: Session, win: Window, key_ids: Sequence[int] | None) -> dict[int, int]:
    """The window's whole latency histogram (for its p50 and p95)."""
    if key_ids is not None and not key_ids:
        return {}
    lb = UsageLatencyBin
    rows = session.execute(
        select(lb.bin, func.sum(lb.count))
        .where(_key_filter(lb.key_id, key_ids), _in_parts(lb.granularity, lb.bucket, _parts(win)))
        .group_by(lb.bin)
    )
    return {int(b): int(n or 0) for b, n in rows}


def total(buckets: Sequence[OutcomeBucket], start: datetime) -> OutcomeBucket:
    out = OutcomeBucket(start)
    for b in buckets:
        out.add(b)
    return out


def top_keys(
    session: Session, win: Window, key_ids: Sequence[int] | None, limit: int = TOP_N
) -> list[dict[str, Any]]:
    """The keys with the most requests in the window, with their error counts."""
    if key_ids is not None and not key_ids:
        return []
    r = UsageRollup
    n = func.sum(r.count)
    errors = func.sum(r.status_4xx + r.status_5xx)
    rows = session.execute(
        select(r.key_id, n, errors)
        .where(
            _key_filter(r.key_id, key_ids),
            r.granularity == SOURCE[win.granularity],
            r.bucket >= win.start,
            r.bucket < win.end,
        )
        .group_by(r.key_id)
        .order_by(n.desc(), r.key_id)
        .limit(limit)
    ).all()
    keys = {
        k.id: k
        for k in session.scalars(select(ApiKey).where(ApiKey.id.in_([k for k, _, _ in rows])))
    }
    return [
        {
            "key_id": keys[k].public_id,
            "name": keys[k].name,
            "count": int(c or 0),
            "errors": int(e or 0),
        }
        for k, c, e in rows
    ]


def top_values(
    session: Session, win: Window, key_ids: Sequence[int] | None, dim: str, limit: int = TOP_N
) -> list[dict[str, Any]]:
    """Top endpoints (dim="endpoint") or client IPs (dim="ip") by requests.

    Read from day and hour roll-ups, so a window shorter than an hour counts the whole
    hours it touches.
    """
    if key_ids is not None and not key_ids:
        return []
    t = UsageTopRollup
    parts = [
        ("hour", floor(a, "hour"), b) if g == "minute" else (g, a, b) for g, a, b in _parts(win)
    ]
    if parts[0][0] == "hour" and len(parts) == 1:  # a minute window: whole hours
        g, a, b = parts[0]
        b = b if floor(b, "hour") == b else floor(b, "hour") + STEP["hour"]
        parts = [(g, a, b)]
    n = func.sum(t.count)
    rows = session.execute(
        select(t.value, n, func.sum(t.errors))
        .where(
            _key_filter(t.key_id, key_ids),
            t.dim == dim,
            _in_parts(t.granularity, t.bucket, parts),
        )
        .group_by(t.value)
        .order_by(n.desc(), t.value)
        .limit(limit)
    )
    return [{"value": v, "count": int(c or 0), "errors": int(e or 0)} for v, c, e in rows]


def peak_minute(session: Session, win: Window, key_ids: Sequence[int] | None) -> dict[str, Any]:
    """The busiest minute of the window (from minute roll-ups) for one key or a set, by
    the requests the limit admitted: a 429 took no slot of the limit, so counting it
    would put a minute over 100 % of a limit that was never exceeded. `refused` is that
    minute's 429s.

    With several keys it is the busiest minute of any single key, since each key has a
    limit of its own.
    """
    r = UsageRollup
    if key_ids is not None and not key_ids:
        return {"count": 0, "refused": 0, "at": None}
    admitted = (r.count - r.status_429).label("admitted")
    row = session.execute(
        select(admitted, r.status_429, r.bucket)
        .where(
            _key_filter(r.key_id, key_ids),
            r.granularity == "minute",
            r.bucket >= win.start,
            r.bucket < win.end,
        )
        .order_by(admitted.desc(), r.bucket.desc())
        .limit(1)
    ).first()
    if row is None:
        return {"count": 0, "refused": 0, "at": None}
    return {"count": int(row[0]), "refused": int(row[1] or 0), "at": iso(utc(row[2]))}


# -- payloads the JSON endpoints answer with ------------------------------------------


def dashboard_usage(session: Session, key_ids: Sequence[int], win: Window) -> dict[str, Any]:
    """All of one user's keys: requests over time by outcome, and the top keys."""
    buckets = outcome_series(session, win, key_ids)
    tot = total(buckets, win.start)
    return {
        **win.to_dict(),
        "classes": outcomes.chart_classes(),
        "total": {"count": tot.count, "errors": tot.errors, "outcome": tot.outcome},
        "buckets": [b.to_dict() for b in buckets],
        "top_keys": top_keys(session, win, key_ids),
    }


def key_usage(
    session: Session, key_id: int, win: Window, limit_per_minute: int, limit_text: str = ""
) -> dict[str, Any]:
    """One key: outcome series with latency, p50/p95, peak minute vs its effective limit
    (app/ratelimit.py `effective_limit`, described by `limit_text`), top lists."""
    buckets = outcome_series(session, win, [key_id], latency=True)
    summed = total(buckets, win.start)
    summed.bins = latency_bins(session, win, [key_id])
    tot = summed.to_dict(latency=True)
    del tot["start"]
    peak = peak_minute(session, win, [key_id])
    return {
        **win.to_dict(),
        "classes": outcomes.chart_classes(),
        "total": tot,
        "buckets": [b.to_dict(latency=True) for b in buckets],
        "peak": {
            **peak,
            "limit": limit_per_minute,
            "limit_text": limit_text,
            "share": round(peak["count"] / limit_per_minute, 4) if limit_per_minute else None,
        },
        "top_endpoints": top_values(session, win, [key_id], "endpoint"),
        "top_ips": top_values(session, win, [key_id], "ip"),
    }


# The tables behind each chart: the page's data tables and CSV downloads use these.
def table(payload: dict[str, Any], chart: str) -> tuple[list[str], list[list[Any]]]:
    """(header, rows) of one chart of a payload; UsageQueryError for an unknown chart."""
    if chart == "series" and "buckets" in payload:
        latency = "latency_p95_ms" in payload["buckets"][0] if payload["buckets"] else False
        header = ["start_utc", "requests", *OUTCOMES]
        if latency:
            header += ["latency_avg_ms", "latency_p95_ms"]
        rows = []
        for b in payload["buckets"]:
            row = [b["start"], b["count"], *(b["outcome"][o] for o in OUTCOMES)]
            if latency:
                row += [b["latency_avg_ms"], b["latency_p95_ms"]]
            rows.append(row)
        return header, rows
    if chart == "keys" and "top_keys" in payload:
        return ["key_id", "name", "requests", "errors"], [
            [k["key_id"], k["name"], k["count"], k["errors"]] for k in payload["top_keys"]
        ]
    for name, column in (("endpoints", "endpoint"), ("ips", "client_ip")):
        if chart == name and f"top_{name}" in payload:
            return [column, "requests", "errors"], [
                [v["value"], v["count"], v["errors"]] for v in payload[f"top_{name}"]
            ]
    raise UsageQueryError("no such chart here")


def tables(payload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every chart's table of a payload, for the page's data tables."""
    out = {}
    for chart in ("series", "keys", "endpoints", "ips"):
        try:
            header, rows = table(payload, chart)
        except UsageQueryError:
            continue
        out[chart] = {"header": header, "rows": rows}
    return out


# -- the dashboard's lists --------------------------------------------------------------


def user_keys(session: Session, user_id: int) -> list[ApiKey]:
    """All of a user's keys, newest first (the dashboard's lists filter them)."""
    return list(
        session.scalars(
            select(ApiKey).where(ApiKey.user_id == user_id).order_by(ApiKey.created_at.desc())
        ).all()
    )


def expiring_keys(keys: Sequence[ApiKey], now: datetime, max_days: int) -> list[ApiKey]:
    """Keys in their warning window (app.keys.lifecycle.is_expiring), soonest first."""
    return sorted(
        (k for k in keys if lifecycle.is_expiring(k, now, max_days)),
        key=lambda k: k.expires_at,
    )


def unused_keys(keys: Sequence[ApiKey], now: datetime, days: int = UNUSED_DAYS) -> list[ApiKey]:
    """Working keys with no request for `days` (and at least that old): revoke candidates."""
    since = now - timedelta(days=days)
    return [
        k
        for k in keys
        if k.revoked_at is None
        and k.expires_at > now
        and k.created_at <= since
        and (k.last_used_at is None or k.last_used_at <= since)
    ]


def recent_failures(
    session: Session, keys: Sequence[ApiKey], limit: int = 10
) -> list[dict[str, Any]]:
    """The latest refused validations of these keys, with the reason in words."""
    if not keys:
        return []
    by_target = {f"key:{k.public_id}": k for k in keys}
    rows = session.scalars(
        select(AuditEvent)
        .where(
            AuditEvent.action.in_(tuple(outcomes.REFUSAL_ACTIONS)),
            AuditEvent.target.in_(list(by_target)),
        )
        .order_by(AuditEvent.id.desc())
        .limit(limit)
    ).all()
    out = []
    for e in rows:
        try:
            details = json.loads(e.details)
        except ValueError:
            details = {}
        outcome = outcomes.of_event(e.action, details)
        out.append(
            {
                "at": e.created_at,
                "key": by_target[e.target] if e.target else None,
                "error": outcome.code,
                "reason": outcome.owner_text,
                "ip": e.actor_ip,
                "endpoint": details.get("endpoint") if isinstance(details, dict) else None,
            }
        )
    return out


# -- the request log (raw events, one key, indexed, limited) ---------------------------


@dataclass(frozen=True)
class LogPage:
    events: list[UsageRecord]
    next_before: int | None  # pass as `before` for the next (older) page


def parse_status_filter(text: str | None) -> tuple[int, int] | None:
    """A status class (2xx..5xx), 401/403, 429, or one exact status; None for all."""
    text = (text or "").strip().lower()
    if not text or text == "all":
        return None
    if text in LOG_FILTERS:
        return LOG_FILTERS[text]
    if text == "401/403":
        return (401, 403)
    if text.isdigit() and len(text) == 3 and 100 <= int(text) <= 599:
        return (int(text), int(text))
    raise UsageQueryError("status must be 2xx, 3xx, 4xx, 5xx, 401/403 or a status such as 429")


def _rollup_column(lo: int, hi: int) -> Any:
    """The hour roll-up column that counts exactly the statuses lo..hi, or None."""
    r = UsageRollup
    exact = {
        (200, 299): r.status_2xx,
        (300, 399): r.status_3xx,
        (400, 499): r.status_4xx,
        (500, 599): r.status_5xx,
        (401, 403): r.status_401_403,
        (429, 429): r.status_429,
    }
    return exact.get((lo, hi))


_SINCE_HOURS = 500


def _since(
    session: Session, key_id: int, column: Any, anchor_hour: datetime | None, need: int
) -> tuple[bool, datetime | None]:
    """Where a filtered page can start looking: (anything to find, oldest hour needed).

    The hour roll-ups say which hours hold matching requests, so a rare status is found
    by reading those hours' events, not by walking every event of a busy key. Hours
    before the cursor's own are counted (its hour also holds newer events).
    """
    r = UsageRollup
    q = select(r.bucket, column).where(r.key_id == key_id, r.granularity == "hour", column > 0)
    if anchor_hour is not None:
        q = q.where(r.bucket < anchor_hour)
    rows = session.execute(q.order_by(r.bucket.desc()).limit(_SINCE_HOURS)).all()
    seen = 0
    for bucket, n in rows:
        seen += int(n)
        if seen >= need:
            return True, utc(bucket)
    if len(rows) == _SINCE_HOURS:
        return True, None
    if rows:
        return True, utc(rows[-1][0])
    if anchor_hour is not None:
        return True, anchor_hour
    return False, None


def request_log(
    session: Session,
    key_id: int,
    status: tuple[int, int] | None = None,
    before: int | None = None,
    limit: int = LOG_PAGE,
) -> LogPage:
    """The newest raw events of one key, `limit` at a time, newest first."""
    e = UsageRecord
    conds: list[Any] = [e.key_id == key_id]
    anchor = None
    if before is not None:
        anchor = session.get(e, before)
        if anchor is None or anchor.key_id != key_id:
            return LogPage([], None)
        conds.append(or_(e.at < anchor.at, and_(e.at == anchor.at, e.id < anchor.id)))
    if status is not None:
        lo, hi = status
        if (lo, hi) == (401, 403):
            conds.append(e.status.in_((401, 403)))
        else:
            conds.append(e.status.between(lo, hi))
        column = _rollup_column(lo, hi)
        if column is not None:
            anchor_hour = floor(anchor.at, "hour") if anchor is not None else None
            found, since = _since(session, key_id, column, anchor_hour, limit + 1)
            if not found:
                return LogPage([], None)
            if since is not None:
                conds.append(e.at >= since)
    rows = list(
        session.scalars(
            select(e).where(*conds).order_by(e.at.desc(), e.id.desc()).limit(limit + 1)
        ).all()
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return LogPage(rows, rows[-1].id if more and rows else None)
