"""What the key page tells its owner about a key's past: where it came from, what
replaced it, who revoked it and why, and why recent calls failed. Read-only."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import outcomes
from app.keys.lifecycle import successor
from app.models import ApiKey, AuditEvent


@dataclass(frozen=True)
class Lineage:
    rotated_from: ApiKey | None
    replaced_by: ApiKey | None


@dataclass(frozen=True)
class Activity:
    at: datetime
    action: str
    outcome: str
    ip: str | None
    reason: str | None  # the error code of a failure, e.g. insufficient_scope
    explanation: str | None  # what it means, e.g. the scopes that were missing


def lineage(session: Session, key: ApiKey) -> Lineage:
    before = session.get(ApiKey, key.rotated_from_id) if key.rotated_from_id else None
    return Lineage(rotated_from=before, replaced_by=successor(session, key))


def _details(event: AuditEvent) -> dict:
    try:
        details = json.loads(event.details)
    except ValueError:
        return {}
    return details if isinstance(details, dict) else {}


def _explain(event: AuditEvent, details: dict) -> tuple[str | None, str | None]:
    if event.action in outcomes.REFUSAL_ACTIONS:
        outcome = outcomes.of_event(event.action, details)
        text = outcome.owner_text
        missing = details.get("missing")
        if outcome.code == "insufficient_scope" and isinstance(missing, list) and missing:
            text = f"{text}: missing " + ", ".join(str(s) for s in missing)
        endpoint = details.get("endpoint")
        if endpoint:
            text = f"{text} (on {endpoint})"
        return outcome.code, text
    if event.action == "key.revoked" and details.get("by_admin"):
        reason = details.get("reason")
        return "by_admin", "by an administrator" + (f": {reason}" if reason else "")
    if event.action == "key.rotated":
        return None, f"replaced by {str(details.get('successor', '')).removeprefix('key:')}"
    if event.action == "key.updated":
        changed = [k for k in ("name", "note") if k in details]
        return None, f"{' and '.join(changed)} changed" if changed else None
    return None, None


def recent_activity(session: Session, key: ApiKey, limit: int = 20) -> list[Activity]:
    """The newest events about this key, each failure with its reason."""
    events = session.scalars(
        select(AuditEvent)
        .where(AuditEvent.target == f"key:{key.public_id}")
        # Insertion order: seq stays empty until the sealer places the event.
        .order_by(AuditEvent.id.desc())
        .limit(limit)
    ).all()
    rows = []
    for e in events:
        reason, explanation = _explain(e, _details(e))
        rows.append(Activity(e.created_at, e.action, e.outcome, e.actor_ip, reason, explanation))
    return rows
