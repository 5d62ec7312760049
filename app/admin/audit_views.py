"""Admin audit browser: list, event detail with proof, verify now, export.

Access control is the admin blueprint's before_request (admins only; anyone else is
recorded as access.unauthorized). Every view of audit data is itself recorded (low).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from flask import (
    Flask,
    Response,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_login import current_user
from sqlalchemy import func, literal, or_, select

from app import accounts, times
from app.admin import bp
from app.admin.forms import VerifyForm
from app.admin.routes import search_arg
from app.api.errors import api_error
from app.audit import core, service, trail
from app.audit import log as auditlog
from app.audit.verify import verify_log
from app.csvexport import csv_lines
from app.extensions import db
from app.models import ApiKey, AuditCheckpoint, AuditEvent, AuditVerification
from app.models._types import utcnow
from app.web import client_ip, page_of

PAGE = 50
FILTERS = ("action", "sensitivity", "actor", "target", "outcome", "actor_ip")
EXPORT_BATCH = 1000


def _actor() -> str:
    return f"user:{current_user.id}"


VIEWED_EVERY = timedelta(minutes=1)


def _viewed(page: str, **details: Any) -> None:
    """At most one `audit.viewed` per admin per minute: browsing would otherwise bury
    the events it looks for. Exports are each recorded (`audit.exported`)."""
    now = utcnow()
    if page != "export":
        recent = db.session.scalar(
            select(AuditEvent.id)
            .where(
                AuditEvent.action == "audit.viewed",
                AuditEvent.actor == _actor(),
                AuditEvent.created_at > now - VIEWED_EVERY,
            )
            .limit(1)
        )
        if recent is not None:
            return
    trail.record(
        db.session,
        "audit.exported" if page == "export" else "audit.viewed",
        actor=_actor(),
        actor_ip=client_ip(),
        target="audit",
        details={"page": page, **details},
        at=now,
    )
    db.session.commit()


def _time_arg(name: str) -> datetime | None:
    raw = request.args.get(name, "").strip()
    if not raw:
        return None
    try:
        return times.parse_form_time(raw)
    except ValueError as exc:
        abort(400, description=f"{name} must be {exc}.")


def _filtered(views_default: str = "hide") -> tuple[Any, dict[str, str], dict[str, str]]:
    """The event query for the request's filters, the active filters, and the raw
    time arguments (for links)."""
    query = select(AuditEvent)
    active: dict[str, str] = {}
    for name in FILTERS:
        value = search_arg(name)
        if value:
            active[name] = value
            query = query.where(getattr(AuditEvent, name) == value)
    q = search_arg()
    if q:
        active["q"] = q
        # An email finds what that user did or had done to them; anything else is a
        # key id ("klk.ID" or the bare id) or an exact actor/target.
        ids = accounts.user_ids_matching(db.session, q) if "@" in q else []
        actors = [f"user:{i}" for i in ids]
        key = f"key:{q.rsplit('.', 1)[-1]}"
        query = query.where(
            or_(
                AuditEvent.actor.in_([q, key, *actors]),
                AuditEvent.target.in_([q, key, *actors]),
            )
        )
    # Page views: hidden in the browser unless asked for; an export holds everything
    # unless its link (which carries the browser's choice) says otherwise.
    views = request.args.get("views", "") or views_default
    if views not in ("hide", "show"):
        abort(400, description="views must be hide or show.")
    if views == "hide":
        query = query.where(AuditEvent.action != "audit.viewed")
    active["views"] = views
    # From the security view: a failed validation's reason, and "keys of this user".
    error = request.args.get("error", "").strip()
    if error:
        if not error.replace("_", "").isalpha() or len(error) > 40:
            abort(400, description="error must be a reason such as invalid_key.")
        active["error"] = error
        query = query.where(AuditEvent.details.contains(f'"error":"{error}"', autoescape=True))
    owner = request.args.get("owner", "").strip()
    if owner:
        owner_id = owner.removeprefix("user:")
        if not owner_id.isdigit() or len(owner_id) > 9:
            abort(400, description="owner must be user:<id>.")
        active["owner"] = owner
        keys = select(literal("key:") + ApiKey.public_id).where(ApiKey.user_id == int(owner_id))
        query = query.where(AuditEvent.target.in_(keys))
    range_ = {k: _time_arg(k) for k in ("since", "until")}
    if range_["since"]:
        query = query.where(AuditEvent.created_at >= range_["since"])
    if range_["until"]:
        query = query.where(AuditEvent.created_at < range_["until"])
    # Written back as the date-time fields show them, so the range stays visible and
    # every next filter, page and export keeps it.
    return query, active, {k: times.form_value(v) for k, v in range_.items() if v}


def _int_arg(name: str) -> int | None:
    raw = request.args.get(name, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or len(raw) > 18:
        abort(400, description=f"{name} must be a whole number.")
    return int(raw)


@bp.route("/audit")
def audit() -> ResponseReturnValue:
    """Newest first through the admin lists' one pager (old `before=` links still work):
    sealed and pending alike."""
    query, active, times = _filtered()
    before = _int_arg("before")  # links from before the pager: older than this row
    if before is not None:
        query = query.where(AuditEvent.id < before)
    page = page_of(
        query,
        columns={
            "time": AuditEvent.id,
            "action": AuditEvent.action,
            "sensitivity": AuditEvent.sensitivity,
            "actor": AuditEvent.actor,
        },
        default_sort="time",
        default_desc=True,
        tiebreak=AuditEvent.id,
        args={**times, **active},
        per_page=PAGE,
    )
    events = page.items
    pending = db.session.scalar(select(func.count()).where(AuditEvent.seq.is_(None)))
    with db.engine.connect() as conn:
        latest = auditlog.latest_checkpoint(conn)
    _viewed("list", filters=active)
    return render_template(
        "admin/audit.html",
        events=events,
        page=page,
        emails=_emails(events),
        filters=active,
        times=times,
        link_args={**times, **active},
        since=times.get("since", ""),
        until=times.get("until", ""),
        verify_form=VerifyForm(),
        sensitivities=trail.SENSITIVITIES,
        outcomes=trail.OUTCOMES,
        actions=sorted(trail.DEFAULT_SENSITIVITY),
        pending=pending,
        latest=latest,
    )


@bp.route("/audit/<int:seq>")
def audit_event(seq: int) -> ResponseReturnValue:
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.seq == seq)) or abort(404)
    raw = bytes(event.canonical)
    try:
        pretty = json.dumps(json.loads(raw), indent=2, sort_keys=True, ensure_ascii=False)
    except ValueError:
        pretty = None
    proof = proof_error = None
    with db.engine.connect() as conn:
        covering = auditlog.covering_checkpoint(conn, seq)
        try:
            proof = auditlog.inclusion_proof(conn, seq)
        except auditlog.LogError as exc:
            proof_error = str(exc)
    proof_ok = None
    if proof is not None:
        proof_ok = core.verify_proof_text(proof["text"], service.settings().trusted).ok
    _viewed("event", seq=seq)
    return render_template(
        "admin/audit_event.html",
        event=event,
        emails=_emails([event]),
        canonical=raw.decode("utf-8", "replace"),
        pretty=pretty,
        covering=covering,
        proof=proof,
        proof_ok=proof_ok,
        proof_error=proof_error,
    )


@bp.route("/audit/<int:seq>/proof")
def audit_proof(seq: int) -> ResponseReturnValue:
    with db.engine.connect() as conn:
        try:
            proof = auditlog.inclusion_proof(conn, seq)
        except auditlog.LogError as exc:
            return api_error(404, message=str(exc))
    _viewed("proof", seq=seq)
    return Response(proof["text"], mimetype="text/plain")


def _emails(events: Any) -> dict[str, str]:
    """`user:N` -> today's email, for the actors and targets shown (stored bytes unchanged)."""
    return accounts.actor_emails(db.session, [x for e in events for x in (e.actor, e.target)])


# --------------------------------------------------------------------------- verify


def _run_verification(app: Flask, run_id: int, actor: str, ip: str | None) -> None:
    """Verify and store the outcome on the run's row; progress as it goes."""
    with app.app_context():
        engine = db.engine

        def progress(done: int, total: int) -> None:
            with engine.begin() as conn:
                conn.execute(
                    AuditVerification.__table__.update()
                    .where(AuditVerification.__table__.c.id == run_id)
                    .values(checked=done, total=total)
                )

        settings = service.settings(app)
        # One process: a web worker should not spawn more (the CLI uses one per core).
        report = verify_log(
            engine, settings, anchor_path=settings.anchor.path, progress=progress, workers=0
        )
        run = db.session.get(AuditVerification, run_id)
        if run is None:  # pragma: no cover - the row was just made
            return
        run.finished_at = utcnow()
        run.ok = report.ok
        run.events = report.events
        run.checkpoints = report.checkpoints
        run.root = report.root.hex() if report.ok else None
        run.last_checkpoint_time = report.last_checkpoint_time
        run.checked = report.events if report.ok else run.checked
        # What `flask audit verify` prints as WARNING lines (a halted sealer, a stale
        # checkpoint, a lagging anchor, cosignatures missing from the database).
        warnings = "".join(f"; WARNING: {w}" for w in report.warnings)
        run.summary = (report.summary() + warnings)[:2000]
        if report.damage is not None:
            run.bad_seq = report.damage.seq
            run.kind = report.damage.kind
            run.problem = report.damage.message[:2000]
        trail.record(
            db.session,
            "audit.verified",
            actor=actor,
            actor_ip=ip,
            target="audit",
            outcome="success" if report.ok else "failure",
            details={
                "events": report.events,
                "bad_seq": run.bad_seq,
                "kind": run.kind,
                "run": run_id,
            },
        )
        db.session.commit()
        db.session.remove()


@bp.route("/audit/verify", methods=["POST"])
def audit_verify() -> ResponseReturnValue:
    """Small trails are verified in the request; large ones in a background thread
    whose progress the result page shows."""
    VerifyForm().validate_on_submit() or abort(400)
    total = db.session.scalar(select(func.count()).where(AuditEvent.seq.is_not(None))) or 0
    run = AuditVerification(started_at=utcnow(), actor=_actor(), total=total, checked=0)
    db.session.add(run)
    db.session.commit()
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    args = (app, run.id, _actor(), client_ip())
    if total <= int(app.config.get("AUDIT_VERIFY_INLINE_MAX", 20000)):
        _run_verification(*args)
    else:
        threading.Thread(target=_run_verification, args=args, daemon=True).start()
    return redirect(url_for("admin.audit_verification", run_id=run.id))


@bp.route("/audit/verify/<int:run_id>")
def audit_verification(run_id: int) -> ResponseReturnValue:
    run = db.session.get(AuditVerification, run_id) or abort(404)
    latest = db.session.scalar(select(AuditCheckpoint).order_by(AuditCheckpoint.idx.desc()))
    if run.finished_at is not None:
        _viewed("verification", run=run_id)
    return render_template("admin/verify.html", run=run, latest=latest)


# --------------------------------------------------------------------------- export


def _export_rows(query: Any) -> Iterator[tuple[AuditEvent, dict[str, str]]]:
    """Keyset batches (newest first) so an export of any size streams; each event with
    its batch's actor emails."""
    last: int | None = None
    while True:
        q = query.order_by(AuditEvent.id.desc()).limit(EXPORT_BATCH)
        if last is not None:
            q = q.where(AuditEvent.id < last)
        rows = db.session.scalars(q).all()
        if not rows:
            return
        emails = _emails(rows)
        for row in rows:
            yield row, emails
        last = rows[-1].id
        db.session.expunge_all()


@bp.route("/audit/export.<fmt>")
def audit_export(fmt: str) -> ResponseReturnValue:
    if fmt not in ("jsonl", "csv"):
        abort(404)
    query, active, time_args = _filtered(views_default="show")
    _viewed("export", format=fmt, filters=active, **time_args)

    def jsonl() -> Iterator[str]:
        for e, emails in _export_rows(query):
            yield (
                json.dumps(
                    {
                        "seq": e.seq,
                        "leaf_hash": bytes(e.leaf_hash).hex(),
                        "canonical": bytes(e.canonical).decode("utf-8", "replace"),
                        # Resolved at export time, outside the hashed bytes.
                        "actor_email": emails.get(e.actor),
                    },
                    ensure_ascii=False,
                    sort_keys=True,
                )
                + "\n"
            )

    def csv_rows() -> Iterator[str]:
        header = ["seq", "time", "action", "sensitivity", "actor", "actor_ip", "target"]
        header += ["outcome", "details", "event_id", "leaf_hash", "actor_email"]
        rows = (
            (
                e.seq,
                times.iso_micro(e.created_at),
                e.action,
                e.sensitivity,
                e.actor,
                e.actor_ip,
                e.target,
                e.outcome,
                e.details,
                e.event_id,
                bytes(e.leaf_hash).hex(),
                emails.get(e.actor),
            )
            for e, emails in _export_rows(query)
        )
        return csv_lines(header, rows)

    stamp = times.compact(times.now())
    body = jsonl() if fmt == "jsonl" else csv_rows()
    mimetype = "application/x-ndjson" if fmt == "jsonl" else "text/csv"
    return Response(
        stream_with_context(body),
        mimetype=mimetype,
        headers={
            "Content-Disposition": f'attachment; filename="audit-{stamp}.{fmt}"',
            "Cache-Control": "no-store",
        },
    )
