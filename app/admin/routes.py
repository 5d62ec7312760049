from flask import abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required
from sqlalchemy import func, select

from app import accounts
from app.admin import bp
from app.admin.forms import TierForm
from app.audit import trail
from app.extensions import db
from app.keys import lifecycle
from app.models import ApiKey, User
from app.web import client_ip, key_policy


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


@bp.route("/users")
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
    # An id past any column's range is simply not there (SQLite would overflow).
    user = (db.session.get(User, user_id) if user_id < 2**31 else None) or abort(404)
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


# The audit browser lives in its own module; importing it registers its routes.
from app.admin import audit_views  # noqa: E402, F401
