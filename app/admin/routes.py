from datetime import UTC, datetime

from flask import abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required
from sqlalchemy import func, select

from app import accounts
from app.admin import bp
from app.admin.forms import TierForm, VerifyForm
from app.audit import trail
from app.extensions import db
from app.keys import lifecycle
from app.models import ApiKey, AuditEvent, User
from app.web import client_ip, key_policy

PAGE = 50
FILTERS = ("action", "sensitivity", "actor", "target", "outcome", "actor_ip")


@bp.before_request
@login_required
def admins_only() -> ResponseReturnValue | None:
    if not current_user.is_admin:
        trail.record(
            db.session,
            "access.unauthorized",
            actor=f"user:{current_user.id}",
            actor_ip=client_ip(),
            target=request.path[:300],
            outcome="denied",
            details={"reason": "admin area", "method": request.method},
        )
        db.session.commit()
        abort(403)
    return None


@bp.route("/")
def users() -> ResponseReturnValue:
    counts = (
        select(ApiKey.user_id, func.count(ApiKey.id).label("n")).group_by(ApiKey.user_id).subquery()
    )
    rows = db.session.execute(
        select(User, func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.user_id == User.id)
        .order_by(User.id)
    ).all()
    return render_template("admin/users.html", rows=rows)


@bp.route("/users/<int:user_id>", methods=["GET", "POST"])
def user_detail(user_id: int) -> ResponseReturnValue:
    user = db.session.get(User, user_id) or abort(404)
    form = TierForm(obj=user)
    if form.validate_on_submit():
        changed = accounts.set_tier(
            db.session,
            user,
            form.tier.data,
            actor=f"user:{current_user.id}",
            actor_ip=client_ip(),
        )
        flash(f"Tier set to {user.tier}." if changed else "Tier unchanged.", "success")
        return redirect(url_for("admin.user_detail", user_id=user.id))
    keys = db.session.scalars(
        select(ApiKey).where(ApiKey.user_id == user.id).order_by(ApiKey.created_at.desc())
    ).all()
    policy = key_policy()
    return render_template(
        "admin/user.html",
        user=user,
        keys=keys,
        form=form,
        status=lambda k: lifecycle.status(k, policy),
    ), (400 if form.errors else 200)


@bp.route("/keys")
def all_keys() -> ResponseReturnValue:
    keys = db.session.scalars(select(ApiKey).order_by(ApiKey.created_at.desc()).limit(500)).all()
    policy = key_policy()
    return render_template(
        "admin/keys.html", keys=keys, status=lambda k: lifecycle.status(k, policy)
    )


def _time_arg(name: str) -> datetime | None:
    raw = request.args.get(name, "").strip()
    if not raw:
        return None
    for fmt in ("%Y-%m-%dT%H:%M", "%Y-%m-%d"):
        try:
            return datetime.strptime(raw, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


@bp.route("/audit")
def audit() -> ResponseReturnValue:
    """Newest first, keyset-paged on seq (no OFFSET), filtered by exact column values."""
    query = select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(PAGE + 1)
    active: dict[str, str] = {}
    for name in FILTERS:
        value = request.args.get(name, "").strip()[:320]
        if value:
            active[name] = value
            query = query.where(getattr(AuditEvent, name) == value)
    since, until = _time_arg("since"), _time_arg("until")
    if since:
        query = query.where(AuditEvent.created_at >= since)
    if until:
        query = query.where(AuditEvent.created_at < until)
    before = request.args.get("before", "")
    if before.isdigit():
        query = query.where(AuditEvent.seq < int(before))
    events = db.session.scalars(query).all()
    more = len(events) > PAGE
    events = events[:PAGE]
    trail.record(
        db.session,
        "audit.viewed",
        actor=f"user:{current_user.id}",
        actor_ip=client_ip(),
        target="audit",
        details={"filters": active},
    )
    db.session.commit()
    return render_template(
        "admin/audit.html",
        events=events,
        filters=active,
        since=request.args.get("since", ""),
        until=request.args.get("until", ""),
        next_before=events[-1].seq if more and events else None,
        verify_form=VerifyForm(),
        sensitivities=trail.SENSITIVITIES,
        outcomes=trail.OUTCOMES,
        actions=sorted(trail.DEFAULT_SENSITIVITY),
    )


@bp.route("/audit/verify", methods=["POST"])
def audit_verify() -> ResponseReturnValue:
    VerifyForm().validate_on_submit() or abort(400)
    result = trail.verify(db.session)
    db.session.rollback()
    trail.record(
        db.session,
        "audit.verified",
        actor=f"user:{current_user.id}",
        actor_ip=client_ip(),
        target="audit",
        outcome="success" if result.ok else "failure",
        details={"events": result.events, "bad_seq": result.bad_seq},
    )
    db.session.commit()
    return render_template("admin/verify.html", result=result)
