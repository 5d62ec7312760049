"""Turn what the app already records into webhook messages.

Three feeds, each safe to scan again or from several workers at once, because every
message has a deterministic id (one row per id, a duplicate insert does nothing):
- the sealed audit log, read in sequence order from a cursor: key.revoked,
  key.rotated, key.leaked (whatever revoked the key: its owner, an admin, a disabled
  account, a leak report);
- the keys table: key.expiring (when the key enters its warning window,
  app.keys.lifecycle.expiring_window, and again a day before) and
  key.expired;
- usage events answered 429: key.rate_limited, at most once an hour per key.
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app import dialects, times
from app.audit import core
from app.keys.lifecycle import expiring_window
from app.models import ApiKey, AuditEvent, UsageRecord, WebhookCursor, WebhookDelivery
from app.models import WebhookEndpoint as Endpoint
from app.models._types import utcnow

AUDIT_ACTIONS = {
    "key.revoked": "key.revoked",
    "key.rotated": "key.rotated",
    "key.leaked": "key.leaked",
}
AUDIT_BATCH = 1000
# Usage events reach the table up to one flush interval late; read a little back.
USAGE_OVERLAP = timedelta(minutes=5)
DAY = timedelta(days=1)


def message(event_type: str, at: datetime, data: dict[str, Any]) -> str:
    """The body, in the Standard Webhooks shape: type, timestamp, data."""
    body = {"type": event_type, "timestamp": core.format_time(at), "data": data}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def msg_id(source: str, endpoint: Endpoint) -> str:
    """The same source event for the same endpoint always gets the same id."""
    digest = hashlib.sha256(f"{source}|{endpoint.public_id}".encode()).hexdigest()
    return "msg_" + digest[:32]


def _insert_ignoring_duplicates(session: Session, rows: list[dict[str, Any]]) -> int:
    if not rows:
        return 0
    stmt = dialects.insert(session, WebhookDelivery).on_conflict_do_nothing(
        index_elements=["msg_id"]
    )
    # RETURNING counts what went in: drivers report no reliable rowcount here.
    return len(session.execute(stmt.returning(WebhookDelivery.id), rows).all())


def _row(endpoint: Endpoint, event_type: str, body: str, source: str, now: datetime) -> dict:
    return {
        "endpoint_id": endpoint.id,
        "msg_id": msg_id(source, endpoint),
        "event_type": event_type,
        "payload": body,
        "created_at": now,
        "state": "pending",
        "attempts": 0,
        "next_attempt_at": now,
    }


def enqueue_one(session: Session, endpoint: Endpoint, body: str, source: str) -> int:
    event_type = json.loads(body)["type"]
    return _insert_ignoring_duplicates(
        session, [_row(endpoint, event_type, body, source, utcnow())]
    )


def _endpoints_by_owner(session: Session) -> dict[int, list[Endpoint]]:
    """Live endpoints by owner id (each feed checks which events an endpoint takes)."""
    result: dict[int, list[Endpoint]] = {}
    for endpoint in session.scalars(select(Endpoint).where(Endpoint.disabled_at.is_(None))):
        result.setdefault(endpoint.user_id, []).append(endpoint)
    return result


def _cursor(session: Session, name: str, start: int = 0) -> WebhookCursor:
    cursor = session.get(WebhookCursor, name)
    if cursor is None:
        # Workers starting together on a fresh database each try to create it: the
        # loser reads the winner's row instead of failing its pass.
        try:
            with session.begin_nested():
                cursor = WebhookCursor(name=name, position=start)
                session.add(cursor)
        except IntegrityError:
            cursor = session.get(WebhookCursor, name, populate_existing=True)
            assert cursor is not None
    return cursor


def start_audit_cursor(session: Session) -> None:
    """Begin the audit feed at the log's current end, so registering the first
    endpoint does not replay history (called when an endpoint is registered)."""
    _cursor(session, "audit", session.scalar(select(func.max(AuditEvent.seq))) or 0)


def _key_data(key: ApiKey) -> dict[str, Any]:
    return {"key_id": key.public_id, "key_prefix": key.prefix, "name": key.name}


def _scan_audit(session: Session, subs: dict[int, list[Endpoint]], now: datetime) -> int:
    cursor = _cursor(session, "audit", session.scalar(select(func.max(AuditEvent.seq))) or 0)
    events = session.execute(
        select(
            AuditEvent.seq,
            AuditEvent.event_id,
            AuditEvent.action,
            AuditEvent.actor,
            AuditEvent.target,
            AuditEvent.created_at,
            AuditEvent.details,
        )
        .where(AuditEvent.seq > cursor.position, AuditEvent.action.in_(AUDIT_ACTIONS))
        .order_by(AuditEvent.seq)
        .limit(AUDIT_BATCH)
    ).all()
    if not events:
        return 0
    public_ids = {
        e.target.removeprefix("key:") for e in events if (e.target or "").startswith("key:")
    }
    keys = {
        k.public_id: k
        for k in session.scalars(select(ApiKey).where(ApiKey.public_id.in_(public_ids)))
    }
    rows = []
    for e in events:
        key = keys.get((e.target or "").removeprefix("key:"))
        if key is None or key.user_id not in subs:
            continue
        event_type = AUDIT_ACTIONS[e.action]
        details = json.loads(e.details)
        data = _key_data(key)
        if event_type == "key.revoked":
            data["by"] = "owner" if e.actor == f"user:{key.user_id}" else "administrator"
            if details.get("reason"):
                data["reason"] = details["reason"]
        elif event_type == "key.rotated":
            data["successor_key_id"] = str(details.get("successor", "")).removeprefix("key:")
            data["old_key_expires_at"] = details.get("old_expires_at")
        elif event_type == "key.leaked":
            data["found_at"] = details.get("found_at")
            data["revoked"] = True  # by the report itself, or before it
        body = message(event_type, e.created_at, data)
        for endpoint in subs[key.user_id]:
            if event_type in endpoint.events and e.created_at >= endpoint.created_at:
                rows.append(_row(endpoint, event_type, body, f"audit:{e.event_id}", now))
    cursor.position = events[-1].seq
    return _insert_ignoring_duplicates(session, rows)


def _has_successor(session: Session, key_ids: list[int]) -> set[int]:
    if not key_ids:
        return set()
    return set(
        session.scalars(select(ApiKey.rotated_from_id).where(ApiKey.rotated_from_id.in_(key_ids)))
    )


def _scan_expiry(
    session: Session, subs: dict[int, list[Endpoint]], now: datetime, max_days: int
) -> int:
    if not subs:
        return 0
    horizon = now + timedelta(days=max_days)
    keys = list(
        session.scalars(
            select(ApiKey).where(
                ApiKey.user_id.in_(subs),
                ApiKey.revoked_at.is_(None),
                ApiKey.expires_at <= horizon,
                ApiKey.expires_at > now - timedelta(days=7),
            )
        )
    )
    rotated = _has_successor(session, [k.id for k in keys])
    rows = []
    for key in keys:
        if key.id in rotated:  # its owner already heard key.rotated; the end is the grace
            continue
        left = key.expires_at - now
        data = {**_key_data(key), "expires_at": core.format_time(key.expires_at)}
        for endpoint in subs[key.user_id]:
            if left <= timedelta(0):
                if "key.expired" in endpoint.events and key.expires_at > endpoint.created_at:
                    body = message("key.expired", key.expires_at, data)
                    rows.append(
                        _row(endpoint, "key.expired", body, f"expired:{key.public_id}", now)
                    )
                continue
            if "key.expiring" not in endpoint.events:
                continue
            # Its window (app.keys.lifecycle), then a day before; only the nearest
            # threshold, named by its whole days rounded up (a 90-day key: 7 and 1).
            window = expiring_window(key.created_at, key.expires_at, max_days)
            thresholds = [t for t in (window, min(window, DAY)) if left <= t]
            if not thresholds:
                continue
            days = math.ceil(min(thresholds) / DAY)
            body = message("key.expiring", now, {**data, "days_left": days})
            rows.append(
                _row(endpoint, "key.expiring", body, f"expiring{days}:{key.public_id}", now)
            )
    return _insert_ignoring_duplicates(session, rows)


def _scan_rate_limited(session: Session, subs: dict[int, list[Endpoint]], now: datetime) -> int:
    cursor = _cursor(session, "rate_limited")
    since = max((cursor.scanned_at or now) - USAGE_OVERLAP, now - timedelta(hours=1))
    cursor.scanned_at = now
    if not subs:
        return 0
    hits = session.execute(
        select(UsageRecord.key_id, func.max(UsageRecord.at))
        .where(
            UsageRecord.status == 429,
            UsageRecord.at >= since,
            UsageRecord.owner_id.in_(subs),
        )
        .group_by(UsageRecord.key_id)
    ).all()
    if not hits:
        return 0
    keys = {
        k.id: k for k in session.scalars(select(ApiKey).where(ApiKey.id.in_([h[0] for h in hits])))
    }
    rows = []
    for key_id, last in hits:
        key = keys.get(key_id)
        if key is None:
            continue
        last = last if last.tzinfo else last.replace(tzinfo=now.tzinfo)
        hour = times.floor(last, "hour")
        data = {**_key_data(key), "hour": core.format_time(hour)}
        body = message("key.rate_limited", last, data)
        source = f"rate_limited:{key.public_id}:{hour.isoformat()}"
        for endpoint in subs.get(key.user_id, []):
            if "key.rate_limited" in endpoint.events:
                rows.append(_row(endpoint, "key.rate_limited", body, source, now))
    return _insert_ignoring_duplicates(session, rows)


def scan(session: Session, now: datetime | None = None, *, expiring_days: int = 7) -> int:
    """One pass over every feed; returns how many new messages were queued (commits).
    `expiring_days`: KEY_EXPIRING_DAYS, the longest warning window."""
    now = now or utcnow()
    subs = _endpoints_by_owner(session)
    queued = _scan_audit(session, subs, now)
    queued += _scan_expiry(session, subs, now, expiring_days)
    queued += _scan_rate_limited(session, subs, now)
    session.commit()
    return queued
