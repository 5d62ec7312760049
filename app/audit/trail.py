"""Append to and verify the hash-linked audit trail.

Appending happens in the caller's transaction: if the audit write fails, the change it
records is rolled back with it. Appenders serialise on the single audit_state row,
taken with an UPDATE first (a write lock on SQLite, a row lock on PostgreSQL), never by
reading "the last hash" without a lock.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.audit import canonical
from app.models import AuditEvent, AuditState
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
    "key.validated": "medium",
    "key.validation_failed": "high",
    "access.unauthorized": "critical",
    "audit.viewed": "low",
    "audit.verified": "low",
}

_COLUMNS = ("event_id", "action", "sensitivity", "actor", "actor_ip", "target", "outcome")


def _ensure_state(session: Session) -> None:
    if session.get(AuditState, 1) is None:
        session.add(AuditState(id=1, size=0, head=canonical.GENESIS))
        session.flush()


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
    """Append one event in the session's current transaction (the caller commits)."""
    sensitivity = sensitivity or DEFAULT_SENSITIVITY.get(action, "medium")
    if sensitivity not in SENSITIVITIES:
        raise ValueError(f"unknown sensitivity {sensitivity!r}")
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome {outcome!r}")
    at = at or utcnow()
    body = {
        "v": 1,
        "event_id": secrets.token_hex(16),
        "time": canonical.format_time(at),
        "action": action,
        "sensitivity": sensitivity,
        "actor": actor,
        "actor_ip": actor_ip,
        "target": target,
        "outcome": outcome,
        "details": details or {},
    }
    raw = canonical.dumps(body)
    leaf = canonical.leaf_hash(raw)

    _ensure_state(session)
    # The UPDATE takes the lock before we read the head.
    session.execute(update(AuditState).where(AuditState.id == 1).values(size=AuditState.size + 1))
    state = session.execute(
        select(AuditState.size, AuditState.head).where(AuditState.id == 1)
    ).one()
    seq = state.size - 1
    chained = canonical.chain_hash(state.head, leaf)
    session.execute(update(AuditState).where(AuditState.id == 1).values(head=chained))
    event = AuditEvent(
        seq=seq,
        event_id=body["event_id"],
        created_at=canonical.parse_time(body["time"]),
        action=action,
        sensitivity=sensitivity,
        actor=actor,
        actor_ip=actor_ip,
        target=target,
        outcome=outcome,
        details=canonical.dumps(body["details"]).decode(),
        canonical=raw,
        leaf_hash=leaf,
        chain_hash=chained,
    )
    session.add(event)
    session.flush()
    return event


@dataclass
class VerifyResult:
    ok: bool
    events: int
    head: bytes
    seconds: float
    bad_seq: int | None = None
    problem: str | None = None

    def summary(self) -> str:
        if self.ok:
            return (
                f"audit trail intact: {self.events} events, head {self.head.hex()}, "
                f"verified in {self.seconds:.2f}s"
            )
        return f"audit trail damaged at seq {self.bad_seq}: {self.problem}"


def _column_mismatch(event: AuditEvent, body: dict[str, Any]) -> str | None:
    for name in _COLUMNS:
        if getattr(event, name) != body.get(name):
            return f"column {name} differs from the hashed bytes"
    if canonical.format_time(event.created_at) != body.get("time"):
        return "column created_at differs from the hashed bytes"
    if json.loads(event.details) != body.get("details"):
        return "column details differs from the hashed bytes"
    return None


def iter_events(session: Session, batch: int = 2000) -> Iterator[AuditEvent]:
    """Stream events in sequence order, keyset-paged so memory stays flat."""
    last = -1
    while True:
        rows = session.scalars(
            select(AuditEvent).where(AuditEvent.seq > last).order_by(AuditEvent.seq).limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].seq
        session.expunge_all()


def verify(session: Session) -> VerifyResult:
    """Recompute every leaf and link; name the first event that does not hold."""
    started = time.perf_counter()
    head = canonical.GENESIS
    expected = 0

    def fail(seq: int, problem: str) -> VerifyResult:
        return VerifyResult(False, expected, head, time.perf_counter() - started, seq, problem)

    for event in iter_events(session):
        if event.seq != expected:
            return fail(expected, f"event missing (next stored event is seq {event.seq})")
        raw = bytes(event.canonical)
        if canonical.leaf_hash(raw) != bytes(event.leaf_hash):
            return fail(event.seq, "stored bytes do not match their leaf hash")
        try:
            body = json.loads(raw)
        except ValueError:
            return fail(event.seq, "stored bytes are not JSON")
        if canonical.dumps(body) != raw:
            return fail(event.seq, "stored bytes are not canonical")
        mismatch = _column_mismatch(event, body)
        if mismatch:
            return fail(event.seq, mismatch)
        head = canonical.chain_hash(head, bytes(event.leaf_hash))
        if head != bytes(event.chain_hash):
            return fail(event.seq, "chain link broken (event changed, inserted or reordered)")
        expected += 1

    state = session.get(AuditState, 1)
    size = state.size if state else 0
    if size != expected:
        return fail(expected, f"trail holds {expected} events but the state records {size}")
    if state is not None and bytes(state.head) != head:
        return fail(expected - 1, "head hash differs from the recorded state")
    return VerifyResult(True, expected, head, time.perf_counter() - started)
