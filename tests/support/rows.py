"""What the database holds, read directly so a check does not trust the code under test."""

from __future__ import annotations

from typing import Any

from flask import Flask
from sqlalchemy import func, select, text

from app.extensions import db
from app.models import ApiKey, AuditEvent
from app.usage import recorder


def count_rows(app: Flask, table: str) -> int:
    """Rows in a table, read with plain SQL so the check does not trust the ORM."""
    with app.app_context():
        return db.session.execute(text(f'SELECT COUNT(*) FROM "{table}"')).scalar_one()


def snapshot(app: Flask) -> dict[str, int]:
    """Row counts a 'nothing changed' assertion compares before and after."""
    return {t: count_rows(app, t) for t in ("user", "api_key", "audit_event")}


def flush_usage(app: Flask) -> None:
    """Write what the batched usage recorder holds (last use, validation events)."""
    recorder(app).flush()


def audit_events(app: Flask, action: str | None = None, target: str | None = None) -> list:
    """Audit events by action and/or target (never by position: sealing may renumber)."""
    # Validation events ride the usage recorder's batch (manual under TESTING): write them.
    flush_usage(app)
    with app.app_context():
        query = select(AuditEvent)
        if action is not None:
            query = query.where(AuditEvent.action == action)
        if target is not None:
            query = query.where(AuditEvent.target == target)
        rows = db.session.scalars(query).all()
        db.session.expunge_all()
        return rows


def written_audit(app: Flask, action: str) -> int:
    """Audit events of `action` in the database now, without flushing the recorder first
    (audit_events flushes, which would hide what is still queued)."""
    with app.app_context():
        return db.session.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.action == action)
        )


def key_row(app: Flask, public_id: str) -> Any:
    """The stored key, detached, for checks of what the database holds."""
    flush_usage(app)
    with app.app_context():
        key = db.session.scalar(select(ApiKey).where(ApiKey.public_id == public_id))
        if key is not None:
            db.session.expunge(key)
        return key
