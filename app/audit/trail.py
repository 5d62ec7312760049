"""Record audit events: the one entry point the rest of the app calls.

`record` only inserts, in the caller's transaction: if the change it records rolls
back, so does the event. It takes no lock and reads nothing, so request handlers
never wait on each other; the sealer (app.audit.log) later gives each event its
place in the Merkle log.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from app.audit import core
from app.models import AuditEvent
from app.models._types import utcnow

SENSITIVITIES = ("low", "medium", "high", "critical")
OUTCOMES = ("success", "failure", "denied")

# The sensitivity each action is recorded with unless the caller says otherwise.
DEFAULT_SENSITIVITY = {
    "user.registered": "medium",
    "user.login": "low",
    "user.login_failed": "medium",
    "user.logout": "low",
    "user.tier_changed": "high",
    "user.created": "high",
    "key.created": "high",
    "key.rotated": "high",
    "key.revoked": "high",
    "key.updated": "medium",
    "key.validated": "medium",
    "key.validation_failed": "high",
    "key.rate_limited": "medium",
    "access.unauthorized": "critical",
    "audit.viewed": "low",
    "audit.exported": "medium",
    "audit.verified": "low",
    "billing.exported": "medium",
    # Second factors, reset by mail, owner settings (issue 19).
    "user.2fa_enabled": "high",
    "user.2fa_disabled": "high",
    "user.2fa_failed": "high",
    "user.2fa_reset": "critical",
    "user.recovery_code_used": "high",
    "user.passkey_added": "high",
    "user.passkey_removed": "high",
    "user.password_reset_requested": "medium",
    "user.password_reset": "high",
    "settings.2fa_policy_changed": "critical",
    # Webhook endpoints (issue 18): where key events go, and the secret that signs them.
    "webhook.created": "high",
    "webhook.updated": "high",
    "webhook.secret_rolled": "high",
    "webhook.resent": "medium",
    "webhook.deleted": "high",
}


def row(
    action: str,
    *,
    actor: str,
    actor_ip: str | None = None,
    target: str | None = None,
    outcome: str = "success",
    sensitivity: str | None = None,
    details: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    """The column values of one event: canonical bytes, leaf hash and the browsing
    columns derived from the same body (for bulk inserts; `build` wraps it)."""
    sensitivity = sensitivity or DEFAULT_SENSITIVITY.get(action, "medium")
    if sensitivity not in SENSITIVITIES:
        raise ValueError(f"unknown sensitivity {sensitivity!r}")
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome {outcome!r}")
    if not action or not actor:
        raise ValueError("an audit event needs an action and an actor")
    at = at or utcnow()
    body = {
        "v": 1,
        "event_id": secrets.token_hex(16),
        "time": core.format_time(at),
        "action": action,
        "sensitivity": sensitivity,
        "actor": actor,
        "actor_ip": actor_ip,
        "target": target,
        "outcome": outcome,
        "details": details or {},
    }
    raw = core.canonical_dumps(body)
    return {
        "seq": None,
        "event_id": body["event_id"],
        "created_at": core.parse_time(body["time"]),
        "action": action,
        "sensitivity": sensitivity,
        "actor": actor,
        "actor_ip": actor_ip,
        "target": target,
        "outcome": outcome,
        "details": core.canonical_dumps(body["details"], checked=False).decode(),
        "canonical": raw,
        "leaf_hash": core.leaf_hash(raw),
    }


def build(action: str, **fields: Any) -> AuditEvent:
    """The event row, not yet added to any session."""
    return AuditEvent(**row(action, **fields))


def record(
    session: Session,
    action: str,
    *,
    actor: str,
    actor_ip: str | None = None,
    target: str | None = None,
    outcome: str = "success",
    sensitivity: str | None = None,
    details: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> AuditEvent:
    """Add one event to the session's current transaction (the caller commits)."""
    event = build(
        action,
        actor=actor,
        actor_ip=actor_ip,
        target=target,
        outcome=outcome,
        sensitivity=sensitivity,
        details=details,
        at=at,
    )
    session.add(event)
    session.flush()
    return event
