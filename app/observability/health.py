"""/healthz and /readyz for load balancers.

/healthz: the process is up and answering (no I/O at all), for liveness probes.
/readyz: every registered check passes (200), or not (503). Anonymous callers learn only
that (ASVS 14.3.3: versions, paths and error texts help an attacker, not a load
balancer); with `Authorization: Bearer <METRICS_TOKEN>` the answer names each check and
why it fails, and a failing answer is logged with them either way. Checks
are registered per app (`register_check(app, name, fn)`, in app.extensions), so
another part of the app adds one with one line; a check returns a short detail string
when healthy and raises (any exception) when not. The default ones: the database, the
limit storage, the audit sealer being current and the audit anchor agreeing with the
database.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy import func, select, text

log = logging.getLogger(__name__)
EXTENSION = "keyledger.ready_checks"
Check = Callable[[], str | None]

bp = Blueprint("health", __name__)


class NotReady(RuntimeError):
    """A check's failure, with the sentence /readyz shows."""


def register_check(app: Flask, name: str, check: Check, needs: str | None = None) -> None:
    """Add (or replace, by name) a readiness check of this app. `needs`: a check
    registered before it that must pass for this one to run (else it fails unasked)."""
    app.extensions.setdefault(EXTENSION, {})[name] = (check, needs)


def run_checks(app: Flask) -> tuple[bool, dict[str, dict[str, Any]]]:
    """Each check in turn. One whose dependency failed is not run: with the database
    stalled each of them would wait out its own deadline, and /readyz must answer a
    load balancer within one (issue 22: 4.1 s with three checks on the database)."""
    results: dict[str, dict[str, Any]] = {}
    for name, (check, needs) in app.extensions.get(EXTENSION, {}).items():
        if needs is not None and not results.get(needs, {}).get("ok", True):
            results[name] = {"ok": False, "error": f"not checked: {needs} failed", "ms": 0.0}
            continue
        started = time.perf_counter()
        try:
            detail = check()
            entry: dict[str, Any] = {"ok": True}
            if detail:
                entry["detail"] = detail
        except Exception as exc:  # a failing check is an answer, never a 500
            entry = {"ok": False, "error": str(exc) or type(exc).__name__}
            if not isinstance(exc, NotReady):
                entry["error"] = f"{type(exc).__name__}: {exc}"[:300]
        entry["ms"] = round((time.perf_counter() - started) * 1000, 1)
        results[name] = entry
    return all(r["ok"] for r in results.values()), results


@bp.route("/healthz", methods=["GET", "HEAD"])
def healthz() -> ResponseReturnValue:
    response = jsonify({"status": "ok"})
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/readyz", methods=["GET", "HEAD"])
def readyz() -> ResponseReturnValue:
    from app.extensions import db

    ok, results = run_checks(current_app._get_current_object())  # type: ignore[attr-defined]
    db.session.remove()  # a failed check must not leave the session's transaction broken
    body: dict[str, Any] = {"status": "ready" if ok else "unready"}
    failing = [name for name, r in results.items() if not r["ok"]]
    if failing:
        log.warning(
            "not ready: %s",
            "; ".join(f"{name}: {results[name]['error']}" for name in failing),
        )
    from app.observability.metrics import presents_metrics_token

    if presents_metrics_token():
        body["checks"] = results
        if failing:
            body["failing"] = failing
    response = jsonify(body)
    response.status_code = 200 if ok else 503
    response.headers["Cache-Control"] = "no-store"
    return response


# --- the default checks ----------------------------------------------------------------


def check_database() -> str:
    from app.extensions import db

    with db.engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    return db.engine.dialect.name


def check_limit_storage() -> str:
    from app.limiter import limiter_of

    storage = limiter_of().storage
    if not storage.check():
        raise NotReady(f"{type(storage).__name__} does not answer")
    return type(storage).__name__


def sealer_max_lag(app: Flask) -> float:
    """How old the oldest unsealed audit event may be before the sealer counts as behind."""
    interval = float(app.config.get("AUDIT_SEAL_INTERVAL", 2.0))
    return float(app.config.get("READY_AUDIT_MAX_LAG") or max(30.0, 10 * interval))


def audit_lag(conn: Any) -> tuple[int, float]:
    """(unsealed events, seconds the oldest of them has waited), from the database."""
    from app.models import AuditEvent

    pending, oldest = conn.execute(
        select(func.count(AuditEvent.id), func.min(AuditEvent.created_at)).where(
            AuditEvent.seq.is_(None)
        )
    ).one()
    if not pending or oldest is None:
        return 0, 0.0
    if oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=UTC)
    return int(pending), max(0.0, (datetime.now(UTC) - oldest).total_seconds())


def check_audit_sealer() -> str:
    """Current: this process's sealer thread runs (where enabled) and no event has
    waited longer than the allowed lag, whichever process seals."""
    from app.audit import service as audit_service
    from app.extensions import db

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    sealer = app.extensions[audit_service.EXTENSION].sealer
    if sealer.enabled and sealer.owned and not sealer.running:
        raise NotReady("this process's audit sealer thread is not running")
    with db.engine.connect() as conn:
        pending, lag = audit_lag(conn)
    limit = sealer_max_lag(app)
    if lag > limit:
        raise NotReady(
            f"{pending} audit events unsealed, the oldest for {lag:.0f}s (> {limit:.0f}s)"
        )
    return f"{pending} unsealed, lag {lag:.1f}s" + ("" if sealer.enabled else "; sealer off here")


def check_audit_anchor() -> str:
    """Fork protection has not halted the sealer, and the anchor's newest checkpoint is
    in the database byte for byte: a database restored from an older copy, or an anchor
    written by another log, fails this."""
    from app.audit import log as auditlog
    from app.audit import service as audit_service
    from app.extensions import db
    from app.models import AuditCheckpoint

    state = audit_service.status()
    if not state.ok:
        raise NotReady(state.reason or "audit log halted")
    settings = audit_service.settings()
    anchor = settings.anchor
    if anchor.path is None:
        return "no anchor file configured"
    with db.engine.connect() as conn:
        signed = auditlog.latest_checkpoint(conn, cosigned=False)
    # Absent or empty after the log has signed, unreadable, or forged: the sealer will
    # halt on it at its next checkpoint, so the log is not ready now.
    unusable = auditlog.anchor_unusable(settings, signed)
    if unusable is not None:
        raise NotReady(unusable)
    cp = anchor.newest()
    if cp is None:
        return "anchor file not written yet"
    with db.engine.connect() as conn:
        row = conn.execute(
            select(AuditCheckpoint.note, AuditCheckpoint.signature).where(
                AuditCheckpoint.idx == cp.index
            )
        ).first()
    if row is None:
        raise NotReady(
            f"anchored checkpoint {cp.index} ({cp.tree_size} events) is missing from the "
            "database: restored from an older copy?"
        )
    if bytes(row.note) != cp.note or bytes(row.signature) != cp.signature:
        raise NotReady(f"checkpoint {cp.index} in the database differs from the anchor")
    return f"checkpoint {cp.index} matches"


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    register_check(app, "database", check_database)
    register_check(app, "limit_storage", check_limit_storage)
    register_check(app, "audit_sealer", check_audit_sealer, needs="database")
    register_check(app, "audit_anchor", check_audit_anchor, needs="database")
