"""Shared helpers for the audit tests: make events, seal, tamper like an attacker
with database access, run the CLI."""

from __future__ import annotations

import os
from typing import Any

from flask import Flask
from sqlalchemy import text

from app.audit import log as auditlog
from app.audit import service, trail
from app.extensions import db

USE_PG = os.environ.get("DATABASE_URL", "").startswith("postgresql")


def add_events(app: Flask, n: int, start: int = 0, **fields: Any) -> None:
    with app.app_context():
        for i in range(start, start + n):
            trail.record(
                db.session,
                fields.get("action", "key.created"),
                actor=fields.get("actor", f"user:{i}"),
                actor_ip=fields.get("actor_ip", "192.0.2.7"),
                target=fields.get("target", f"key:k{i}"),
                details=fields.get("details", {"n": i, "name": "ci ✓"}),
            )
        db.session.commit()


def seal(app: Flask, force: bool = False) -> int:
    with app.app_context():
        return auditlog.seal_all(db.engine, service.settings(app), force_checkpoint=force)


def build_log(app: Flask, batches: tuple[int, ...] = (10, 10)) -> None:
    """Events sealed in batches: one checkpoint per batch (sizes 10, 20 by default)."""
    n = 0
    for size in batches:
        add_events(app, size, start=n)
        n += size
        seal(app)


def tamper(app: Flask, *statements: tuple[str, dict[str, Any]] | str) -> None:
    """Run SQL as someone with full database access (PostgreSQL triggers bypassed, as a
    superuser could)."""
    with app.app_context(), db.engine.begin() as conn:
        if USE_PG:
            conn.execute(text("SET LOCAL session_replication_role = replica"))
        for st in statements:
            sql, params = (st, {}) if isinstance(st, str) else st
            conn.execute(text(sql), params)


def scalar(app: Flask, sql: str, **params: Any) -> Any:
    with app.app_context(), db.engine.connect() as conn:
        return conn.execute(text(sql), params).scalar()


def verify(app: Flask, *args: str):
    return app.test_cli_runner().invoke(args=["audit", "verify", *args])
