"""Admin analytics and security monitoring: the queries behind /admin and /admin/security.

Usage figures read the day roll-ups (one row per key and UTC day), never raw events:
a month across every key is at most 30 rows a key. Security figures count audit
events by action over an indexed time range, grouped in the database.

Every chart is a `Chart`: labels, one or more series, and for each label the audit
browser link that shows what it counts (where the figure comes from the trail).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from app import dialects, outcomes, times
from app.accounts import LOGIN_FAILURES
from app.config import TIERS
from app.models import ApiKey, AuditEvent, UsageRollup, User

WINDOWS = (7, 30, 90)
TOP = 10
# A bar chart whose largest bar is this many times its smallest is drawn on a log scale
# at first (one key that dwarfs the rest would leave the others a pixel wide).
LOG_SPREAD = 20
# The failures chart stacks every outcome audited as key.validation_failed.
FAILURE_REASONS = tuple(sorted(outcomes.AUDITED_FAILURES, key=list(outcomes.OUTCOMES).index))
# Login refusals: wrong passwords, and throttled attempts where the app records them.

# A link to the audit browser for a set of filters (the view passes url_for).
AuditLink = Callable[..., str]


@dataclass
class Chart:
    name: str
    title: str
    kind: str  # bar | stacked | line | doughnut | hbar
    labels: list[str]
    series: list[dict[str, Any]]  # {"name": str, "data": list[number]}
    unit: str = "requests"
    links: list[str | None] = field(default_factory=list)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "kind": self.kind,
            "unit": self.unit,
            "labels": self.labels,
            # A series named after a status class or an outcome is drawn in its
            # catalogued colour and legend (app/outcomes.py); the JavaScript has none.
            "series": [{**outcomes.style(s["name"]), **s} for s in self.series],
            "links": self.links,
            "note": self.note,
            "log": self.spread() >= LOG_SPREAD if self.kind == "hbar" else False,
        }

    def spread(self) -> float:
        """How many times the largest figure is the smallest non-zero one (1 if none)."""
        values = [v for s in self.series for v in s["data"] if v and v > 0]
        return max(values) / min(values) if values else 1.0

    def rows(self) -> list[list[Any]]:
        """The table (and CSV) form: a header, then one row per label."""
        head = ["label", *(s["name"] for s in self.series)]
        return [
            head,
            *([lab, *(s["data"][i] for s in self.series)] for i, lab in enumerate(self.labels)),
        ]


@dataclass(frozen=True)
class Window:
    start: datetime  # midnight UTC, `days` days before the end
    end: datetime  # the end of today (UTC)
    days: int

    @classmethod
    def last(cls, days: int, now: datetime) -> Window:
        end = times.floor(now, "day") + timedelta(days=1)
        return cls(end - timedelta(days=days), end, days)

    @property
    def last_day(self) -> datetime:
        return self.end - timedelta(days=1)

    def day_labels(self) -> list[str]:
        return [times.day_text(self.start + timedelta(days=i)) for i in range(self.days)]

    def audit_args(self) -> dict[str, str]:
        """The window as the audit browser's since/until filters."""
        return {"since": times.form_value(self.start), "until": times.form_value(self.end)}


def _day_rollups(window: Window) -> Any:
    return and_(
        UsageRollup.granularity == "day",
        UsageRollup.bucket >= window.start,
        UsageRollup.bucket < window.end,
    )


_label = times.day_text


# ------------------------------------------------------------------------ overview


def totals(session: Session, window: Window) -> dict[str, Any]:
    """The headline figures of the window."""
    row = session.execute(
        select(
            func.coalesce(func.sum(UsageRollup.count), 0),
            func.coalesce(func.sum(UsageRollup.status_4xx), 0),
            func.coalesce(func.sum(UsageRollup.status_5xx), 0),
            func.coalesce(func.sum(UsageRollup.status_429), 0),
            func.count(func.distinct(UsageRollup.key_id)),
        ).where(_day_rollups(window))
    ).one()
    requests, n4, n5, n429, active = (int(v or 0) for v in row)
    new_keys = session.scalar(
        select(func.count())
        .select_from(ApiKey)
        .where(ApiKey.created_at >= window.start, ApiKey.created_at < window.end)
    )
    users = session.scalar(select(func.count()).select_from(User))
    keys = session.scalar(select(func.count()).select_from(ApiKey))
    return {
        "days": window.days,
        "requests": requests,
        "errors": n4 + n5,
        "error_rate": (n4 + n5) / requests if requests else 0.0,
        "errors_5xx": n5,
        "rate_limited": n429,
        "active_keys": active,
        "new_keys": int(new_keys or 0),
        "users": int(users or 0),
        "keys": int(keys or 0),
    }


def _per_day(session: Session, window: Window) -> dict[str, list[int]]:
    """count, 2xx, 3xx, 4xx, 429, 5xx, other and active keys per day of the window."""
    labels = window.day_labels()
    index = {lab: i for i, lab in enumerate(labels)}
    names = ("count", "2xx", "3xx", "4xx", "429", "5xx", "other", "active")
    out = {n: [0] * len(labels) for n in names}
    rows = session.execute(
        select(
            UsageRollup.bucket,
            func.sum(UsageRollup.count),
            func.sum(UsageRollup.status_2xx),
            func.sum(UsageRollup.status_3xx),
            func.sum(UsageRollup.status_4xx),
            func.sum(UsageRollup.status_429),
            func.sum(UsageRollup.status_5xx),
            func.sum(UsageRollup.status_other),
            func.count(UsageRollup.key_id),
        )
        .where(_day_rollups(window))
        .group_by(UsageRollup.bucket)
    )
    for bucket, *values in rows:
        i = index.get(_label(bucket))
        if i is None:
            continue
        for n, v in zip(names, values, strict=True):
            out[n][i] = int(v or 0)
    return out


def requests_chart(session: Session, window: Window) -> Chart:
    d = _per_day(session, window)
    # 4xx without the 429s, which get their own colour.
    four = [a - b for a, b in zip(d["4xx"], d["429"], strict=True)]
    series = [
        {"name": "2xx", "data": d["2xx"]},
        {"name": "3xx", "data": d["3xx"]},
        {"name": "4xx", "data": four},
        {"name": "429", "data": d["429"]},
        {"name": "5xx", "data": d["5xx"]},
    ]
    if any(d["other"]):
        series.append({"name": "other", "data": d["other"]})
    return Chart("requests", "Requests a day by outcome", "stacked", window.day_labels(), series)


def error_rate_chart(session: Session, window: Window) -> Chart:
    d = _per_day(session, window)
    rate = [
        round(100 * (n4 + n5) / n, 2) if n else 0
        for n, n4, n5 in zip(d["count"], d["4xx"], d["5xx"], strict=True)
    ]
    return Chart(
        "error_rate",
        "Error rate a day (4xx and 5xx, %)",
        "line",
        window.day_labels(),
        [{"name": "error rate %", "data": rate}],
        unit="%",
    )


def keys_chart(session: Session, window: Window) -> Chart:
    """Active keys (used that day) and keys created that day."""
    d = _per_day(session, window)
    labels = window.day_labels()
    index = {lab: i for i, lab in enumerate(labels)}
    created = [0] * len(labels)
    day = dialects.utc_day_text(session, ApiKey.created_at)
    rows = session.execute(
        select(day, func.count())
        .where(ApiKey.created_at >= window.start, ApiKey.created_at < window.end)
        .group_by(day)
    )
    for label, n in rows:
        if label in index:
            created[index[label]] = int(n)
    return Chart(
        "keys",
        "Active keys and new keys a day",
        "line",
        labels,
        [{"name": "active keys", "data": d["active"]}, {"name": "new keys", "data": created}],
        unit="keys",
    )


def top_keys_chart(session: Session, window: Window) -> Chart:
    n = func.sum(UsageRollup.count).label("n")
    top = (
        select(UsageRollup.key_id, n)
        .where(_day_rollups(window))
        .group_by(UsageRollup.key_id)
        .order_by(n.desc(), UsageRollup.key_id)
        .limit(TOP)
        .subquery()
    )
    rows = session.execute(
        select(ApiKey.public_id, ApiKey.name, User.email, top.c.n)
        .join(top, top.c.key_id == ApiKey.id)
        .join(User, User.id == ApiKey.user_id)
        .order_by(top.c.n.desc(), ApiKey.public_id)
    ).all()
    return Chart(
        "top_keys",
        f"Top {TOP} keys by requests",
        "hbar",
        [f"{name} ({pid})" for pid, name, _email, _ in rows],
        [{"name": "requests", "data": [int(r[3]) for r in rows]}],
    )


def top_users_chart(session: Session, window: Window) -> Chart:
    n = func.sum(UsageRollup.count).label("n")
    top = (
        select(UsageRollup.owner_id, n)
        .where(_day_rollups(window))
        .group_by(UsageRollup.owner_id)
        .order_by(n.desc(), UsageRollup.owner_id)
        .limit(TOP)
        .subquery()
    )
    rows = session.execute(
        select(User.email, User.tier, top.c.n)
        .join(top, top.c.owner_id == User.id)
        .order_by(top.c.n.desc(), User.email)
    ).all()
    return Chart(
        "top_users",
        f"Top {TOP} users by requests",
        "hbar",
        [f"{email} ({tier})" for email, tier, _ in rows],
        [{"name": "requests", "data": [int(r[2]) for r in rows]}],
    )


def tier_mix_chart(session: Session, window: Window) -> Chart:
    """Each tier's share of the accounts and of the requests (at the tier they were
    made under), in percent: two quantities of different size on one axis."""
    accounts = dict.fromkeys(TIERS, 0)
    for tier, n in session.execute(select(User.tier, func.count()).group_by(User.tier)):
        accounts[tier] = int(n)
    requests = dict.fromkeys(TIERS, 0)
    tier = func.coalesce(UsageRollup.tier, "basic")
    rows = session.execute(
        select(tier, func.sum(UsageRollup.count)).where(_day_rollups(window)).group_by(tier)
    )
    for t, n in rows:
        requests[t] = requests.get(t, 0) + int(n or 0)
    labels = list(requests)
    n_accounts, n_requests = sum(accounts.values()) or 1, sum(requests.values()) or 1
    return Chart(
        "tier_mix",
        "Tier mix: share of accounts and of requests (%)",
        "bar",
        labels,
        [
            {
                "name": "accounts %",
                "data": [round(100 * accounts.get(t, 0) / n_accounts, 1) for t in labels],
            },
            {
                "name": "requests %",
                "data": [round(100 * requests[t] / n_requests, 1) for t in labels],
            },
        ],
        unit="%",
        note=f"{sum(accounts.values()):,} accounts, {sum(requests.values()):,} requests.",
    )


# ------------------------------------------------------------------------ security


def _audit_window(window: Window) -> Any:
    return and_(AuditEvent.created_at >= window.start, AuditEvent.created_at < window.end)


def _audit_per_day(session: Session, window: Window, actions: tuple[str, ...]) -> dict[str, list]:
    """{action: [count per day]} for the window."""
    labels = window.day_labels()
    index = {lab: i for i, lab in enumerate(labels)}
    out = {a: [0] * len(labels) for a in actions}
    day = dialects.utc_day_text(session, AuditEvent.created_at)
    rows = session.execute(
        select(AuditEvent.action, day, func.count())
        .where(AuditEvent.action.in_(actions), _audit_window(window))
        .group_by(AuditEvent.action, day)
    )
    for action, label, n in rows:
        if label in index:
            out[action][index[label]] = int(n)
    return out


def _reason_of(details: str) -> str:
    """The `error` of a key.validation_failed event's details (canonical JSON)."""
    return outcomes.of_event("key.validation_failed", details).code


def failures_chart(session: Session, window: Window, link: AuditLink) -> Chart:
    """Failed validations a day, stacked by reason; grouped by (day, details) in SQL
    (details hold only the reason and the endpoint, so few distinct values)."""
    labels = window.day_labels()
    index = {lab: i for i, lab in enumerate(labels)}
    by_reason: dict[str, list[int]] = {r: [0] * len(labels) for r in FAILURE_REASONS}
    day = dialects.utc_day_text(session, AuditEvent.created_at)
    rows = session.execute(
        select(day, AuditEvent.details, func.count())
        .where(AuditEvent.action == "key.validation_failed", _audit_window(window))
        .group_by(day, AuditEvent.details)
    )
    for label, details, n in rows:
        reason = _reason_of(details)
        by_reason.setdefault(reason, [0] * len(labels))
        if label in index:
            by_reason[reason][index[label]] += int(n)
    series = [
        {
            "name": reason,
            "data": data,
            "link": link(action="key.validation_failed", error=reason, **window.audit_args()),
            "links": [
                link(action="key.validation_failed", error=reason, **_day_args(lab))
                for lab in labels
            ],
        }
        for reason, data in by_reason.items()
    ]
    links = [link(action="key.validation_failed", **_day_args(lab)) for lab in labels]
    return Chart(
        "failures",
        "Failed validations a day by reason",
        "stacked",
        labels,
        series,
        unit="failures",
        links=links,
    )


def _day_args(label: str) -> dict[str, str]:
    """One UTC day as the audit browser's since/until (a chart's bar or point)."""
    start = times.parse_form_time(label)
    return {"since": times.form_value(start), "until": times.form_value(start + timedelta(days=1))}


def failure_ips_chart(session: Session, window: Window, link: AuditLink) -> Chart:
    n = func.count().label("n")
    rows = session.execute(
        select(AuditEvent.actor_ip, n)
        .where(
            AuditEvent.action == "key.validation_failed",
            AuditEvent.actor_ip.is_not(None),
            _audit_window(window),
        )
        .group_by(AuditEvent.actor_ip)
        .order_by(n.desc(), AuditEvent.actor_ip)
        .limit(TOP)
    ).all()
    return Chart(
        "failure_ips",
        f"Top {TOP} source IPs of failed validations",
        "hbar",
        [ip for ip, _ in rows],
        [{"name": "failures", "data": [int(c) for _, c in rows]}],
        unit="failures",
        links=[
            link(action="key.validation_failed", actor_ip=ip, **window.audit_args())
            for ip, _ in rows
        ],
    )


def incidents_chart(session: Session, window: Window, link: AuditLink) -> Chart:
    """Unauthorized access, rate-limit refusals, failed and throttled logins a day."""
    actions = ("access.unauthorized", "key.rate_limited", *LOGIN_FAILURES)
    per_day = _audit_per_day(session, window, actions)
    names = {
        "access.unauthorized": "unauthorized access",
        "key.rate_limited": "rate-limit refusals (per key and minute)",
        "user.login_failed": "failed logins",
        "user.login_throttled": "throttled logins",
    }
    labels = window.day_labels()
    series = [
        {
            "name": names[a],
            "data": per_day[a],
            # Refusals come by the hundred, the rest by the few: their own axis keeps
            # an unauthorized access from being drawn flat on the floor.
            **({"axis": "right"} if a == "key.rate_limited" else {}),
            "link": link(action=a, **window.audit_args()),
            # A point opens its own day's events of its own kind.
            "links": [link(action=a, **_day_args(lab)) for lab in labels],
        }
        for a in actions
    ]
    return Chart(
        "incidents",
        "Unauthorized access, rate-limit refusals, failed and throttled logins a day",
        "line",
        window.day_labels(),
        series,
        unit="events",
    )


def failing_users_chart(session: Session, window: Window, link: AuditLink) -> Chart:
    """Accounts whose keys failed validation most (wrong secret, revoked, expired, out
    of scope: the failures that name a key). Failures are counted per target in the
    database (index on action), then mapped to their owners: a join on the computed
    'key:<id>' text could use no index."""
    per_target = session.execute(
        select(AuditEvent.target, func.count())
        .where(
            AuditEvent.action == "key.validation_failed",
            AuditEvent.target.is_not(None),
            _audit_window(window),
        )
        .group_by(AuditEvent.target)
    ).all()
    by_key = {t.removeprefix("key:"): int(n) for t, n in per_target if t.startswith("key:")}
    per_user: dict[int, int] = defaultdict(int)
    emails: dict[int, str] = {}
    if by_key:
        owners = session.execute(
            select(ApiKey.public_id, User.id, User.email)
            .join(User, User.id == ApiKey.user_id)
            .where(ApiKey.public_id.in_(list(by_key)))
        )
        for pid, uid, email in owners:
            per_user[uid] += by_key[pid]
            emails[uid] = email
    top = sorted(per_user.items(), key=lambda kv: (-kv[1], emails[kv[0]]))[:TOP]
    return Chart(
        "failing_users",
        f"Top {TOP} users whose keys fail validation",
        "hbar",
        [emails[uid] for uid, _ in top],
        [{"name": "failures", "data": [n for _, n in top]}],
        unit="failures",
        links=[
            link(action="key.validation_failed", owner=f"user:{uid}", **window.audit_args())
            for uid, _ in top
        ],
    )


# The security view's headline figures: (label, the audit action each counts).
SECURITY_FIGURES = (
    ("Failed validations", "key.validation_failed"),
    ("Unauthorized access", "access.unauthorized"),
    ("Rate-limit refusals (key and minute)", "key.rate_limited"),
    ("Failed logins", LOGIN_FAILURES[0]),
    ("Throttled logins", LOGIN_FAILURES[1]),
    ("Refused second-factor codes", "user.2fa_failed"),
    ("Recovery codes used", "user.recovery_code_used"),
    ("Keys revoked", "key.revoked"),
    ("Keys rotated", "key.rotated"),
)


def security_figures(session: Session, window: Window, link: AuditLink) -> list[dict[str, Any]]:
    """The headline counts of the security view, each with the audit link it counts."""
    actions = [action for _, action in SECURITY_FIGURES]
    counts = dict.fromkeys(actions, 0)
    for action, c in session.execute(
        select(AuditEvent.action, func.count())
        .where(AuditEvent.action.in_(actions), _audit_window(window))
        .group_by(AuditEvent.action)
    ):
        counts[action] = int(c)
    refused = session.scalar(
        select(func.coalesce(func.sum(UsageRollup.status_429), 0)).where(_day_rollups(window))
    )
    w = window.audit_args()
    figures: list[dict[str, Any]] = []
    for label, action in SECURITY_FIGURES:
        figure = {"label": label, "value": counts[action], "link": link(action=action, **w)}
        if action == "key.rate_limited":
            figure["note"] = f"{int(refused or 0):,} answers with status 429 in usage"
        figures.append(figure)
    return figures


def recent_key_changes(session: Session, limit: int = 10) -> list[AuditEvent]:
    """The latest revocations and rotations, newest first (audit id order)."""
    return list(
        session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action.in_(("key.revoked", "key.rotated")))
            .order_by(AuditEvent.id.desc())
            .limit(limit)
        )
    )


OVERVIEW_CHARTS = ("requests", "error_rate", "keys", "top_keys", "top_users", "tier_mix")
SECURITY_CHARTS = ("failures", "failure_ips", "incidents", "failing_users")


def chart(session: Session, name: str, window: Window, link: AuditLink) -> Chart:
    """One chart by name; KeyError for a name that is not one."""
    builders: dict[str, Callable[[], Chart]] = {
        "requests": lambda: requests_chart(session, window),
        "error_rate": lambda: error_rate_chart(session, window),
        "keys": lambda: keys_chart(session, window),
        "top_keys": lambda: top_keys_chart(session, window),
        "top_users": lambda: top_users_chart(session, window),
        "tier_mix": lambda: tier_mix_chart(session, window),
        "failures": lambda: failures_chart(session, window, link),
        "failure_ips": lambda: failure_ips_chart(session, window, link),
        "incidents": lambda: incidents_chart(session, window, link),
        "failing_users": lambda: failing_users_chart(session, window, link),
    }
    return builders[name]()


def reasons_total(chart: Chart) -> dict[str, int]:
    """Per-series totals (for the page's figure cards)."""
    out: dict[str, int] = defaultdict(int)
    for s in chart.series:
        out[s["name"]] += sum(s["data"])
    return dict(out)
