"""Wire the audit log into an app: settings from config, and the background sealer.

The sealer is an app.background Worker: a daemon thread started lazily by the first
request a process serves, so it runs in each gunicorn worker (after the fork, never
in a master that forks it away). Every worker's sealer serialises on the same
state-row lock, so running several is safe; each wakes every AUDIT_SEAL_INTERVAL
seconds, which bounds how long an event waits to be sealed, and signs a checkpoint
at least every AUDIT_CHECKPOINT_INTERVAL seconds even when nothing happened.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

from flask import Flask, current_app

from app.audit.anchor import Anchor
from app.audit.log import LogError, LogSettings, halted, seal_all
from app.audit.signing import load_signer, trusted_keys, witness_keys
from app.background import Worker

log = logging.getLogger(__name__)
EXTENSION = "keyledger.audit"


def settings_from_config(app: Flask) -> LogSettings:
    conf = app.config
    origin = conf.get("AUDIT_ORIGIN") or "keyledger/audit"
    signer = load_signer(conf["AUDIT_SIGNING_KEY"], origin)
    anchor_path = conf.get("AUDIT_ANCHOR_PATH")
    if anchor_path is None:
        anchor_path = str(Path(app.instance_path) / "audit_anchor.jsonl")
    trusted = conf.get("AUDIT_TRUSTED_KEYS")
    if trusted is None:
        trusted = str(Path(app.instance_path) / "audit_trusted_keys.pem")
    keys = trusted_keys(signer, trusted)
    return LogSettings(
        origin=origin,
        signer=signer,
        trusted=keys,
        witnesses=witness_keys(keys, conf.get("AUDIT_WITNESSES")),
        anchor=Anchor(
            Path(anchor_path) if anchor_path not in ("", "off") else None,
            conf.get("AUDIT_ANCHOR_COMMAND") or None,
        ),
        checkpoint_interval=float(conf.get("AUDIT_CHECKPOINT_INTERVAL", 300)),
        batch=int(conf.get("AUDIT_SEAL_BATCH", 5000)),
    )


def settings(app: Flask | None = None) -> LogSettings:
    return (app or current_app).extensions[EXTENSION].settings


def _sealer(app: Flask, log_settings: LogSettings) -> Worker:
    """The background sealer: app.background's Worker calling seal_all each pass."""

    def seal_pass() -> None:
        from app.extensions import db

        # A halt (LogError) was logged at critical level when it happened.
        with app.app_context(), contextlib.suppress(LogError):
            seal_all(db.engine, log_settings)

    enabled = app.config.get("AUDIT_SEALER")
    return Worker(
        "audit-sealer",
        seal_pass,
        float(app.config.get("AUDIT_SEAL_INTERVAL", 2.0)),
        enabled=(not app.testing) if enabled is None else bool(enabled),
    )


@dataclass(frozen=True)
class Status:
    """What readiness needs to know about the audit log."""

    ok: bool
    reason: str | None = None


def status(app: Flask | None = None) -> Status:
    """Readiness of the audit log: False while the sealer is halted by fork
    protection (it signs nothing until `flask audit recover`). One indexed read."""
    from app.extensions import db

    app = app or current_app
    with app.app_context(), db.engine.connect() as conn:
        reason = halted(conn)
        conn.rollback()
    if reason:
        return Status(False, f"audit log halted: {reason}")
    return Status(True)


def receipts_for_key(public_id: str, limit: int = 200) -> dict:
    """The receipts of one key's lifecycle events (app.audit.log.key_receipts)."""
    from app.audit.log import key_receipts
    from app.extensions import db

    with db.engine.connect() as conn:
        try:
            return key_receipts(conn, public_id, limit)
        finally:
            conn.rollback()


class AuditService:
    def __init__(self, app: Flask) -> None:
        self.settings = settings_from_config(app)
        self.sealer = _sealer(app, self.settings)


def init_app(app: Flask) -> None:
    service = AuditService(app)
    app.extensions[EXTENSION] = service

    @app.before_request
    def _start_sealer() -> None:
        service.sealer.ensure_running()
