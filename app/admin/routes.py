from flask import abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required
from sqlalchemy import func, or_, select

from app import accounts, notices, text
from app.admin import bp
from app.admin.forms import AdminRevokeForm, TierForm
from app.audit import trail
from app.extensions import db
from app.keys import format as keyformat
from app.keys import lifecycle
from app.models import ApiKey, User
from app.web import client_ip, key_policy, page_of


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
    q = search_arg()
    counts = (
        select(ApiKey.user_id, func.count(ApiKey.id).label("n")).group_by(ApiKey.user_id).subquery()
    )
    n_keys = func.coalesce(counts.c.n, 0)
    query = select(User, n_keys).outerjoin(counts, counts.c.user_id == User.id)
    if q:
        query = query.where(User.email.contains(accounts.normalize_email(q), autoescape=True))
    page = page_of(
        query,
        columns={"email": User.email, "joined": User.created_at, "tier": User.tier, "keys": n_keys},
        default_sort="joined",
        default_desc=False,
        tiebreak=User.id,
        args={"q": q},
        scalars=False,
    )
    return render_template("admin/users.html", rows=page.items, page=page, q=q)


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
    page = page_of(
        select(ApiKey).where(ApiKey.user_id == user.id),
        columns={
            "created": ApiKey.created_at,
            "name": ApiKey.name,
            "expires": ApiKey.expires_at,
            "last_used": ApiKey.last_used_at,
        },
        default_sort="created",
        default_desc=True,
        tiebreak=ApiKey.id,
        args={"user_id": str(user.id)},
    )
    keys = page.items
    policy = key_policy()
    return render_template(
        "admin/user.html",
        user=user,
        keys=keys,
        page=page,
        form=form,
        status=lambda k: lifecycle.status(k, policy),
        **account_views.account_forms(),
        **twofactor_views.user_context(user),
        superseded=lifecycle.superseded_ids(db.session, (k.id for k in keys)),
        revoke_form=AdminRevokeForm(),
    ), (400 if form.errors else 200)


@bp.route("/keys/<public_id>/revoke", methods=["POST"])
def revoke_key(public_id: str) -> ResponseReturnValue:
    """Revoke anyone's key; the reason is required and shown to the owner."""
    key = (
        db.session.scalar(select(ApiKey).where(ApiKey.public_id == public_id))
        if keyformat.is_public_id(public_id)
        else None
    ) or abort(404)
    back = url_for("admin.user_detail", user_id=key.user_id)
    form = AdminRevokeForm()
    if not form.validate_on_submit():
        problems = " ".join(" ".join(e) for e in form.errors.values())
        flash(f"Not revoked. {problems}", "error")
        return redirect(back)
    try:
        changed = lifecycle.revoke_key(
            db.session, key, actor=current_user, actor_ip=client_ip(), reason=form.reason.data
        )
    except lifecycle.KeyRequestError as exc:
        db.session.rollback()
        flash(f"Not revoked: {exc}.", "error")
        return redirect(back)
    if changed:
        notices.send(
            key.owner, "key_revoked", key=f"{key.name} ({key.public_id})", reason=form.reason.data
        )
        flash(f"Key “{key.name}” is revoked; its owner sees why.", "success")
    else:
        flash("The key was already revoked.", "info")
    return redirect(back)


@bp.route("/keys")
def all_keys() -> ResponseReturnValue:
    q = search_arg()
    query = select(ApiKey).join(User, User.id == ApiKey.user_id)
    if q:
        public_id = q.rsplit(".", 1)[-1]  # "klk.ID" or the bare id
        query = query.where(
            or_(
                ApiKey.public_id == public_id,
                func.lower(ApiKey.name).contains(q.lower(), autoescape=True),
                User.email.contains(accounts.normalize_email(q), autoescape=True),
            )
        )
    page = page_of(
        query,
        columns={
            "created": ApiKey.created_at,
            "name": ApiKey.name,
            "owner": User.email,
            "expires": ApiKey.expires_at,
            "last_used": ApiKey.last_used_at,
        },
        default_sort="created",
        default_desc=True,
        tiebreak=ApiKey.id,
        args={"q": q},
    )
    policy = key_policy()
    return render_template(
        "admin/keys.html",
        keys=page.items,
        page=page,
        q=q,
        status=lambda k: lifecycle.status(k, policy),
        superseded=lifecycle.superseded_ids(db.session, (k.id for k in page.items)),
        revoke_form=AdminRevokeForm(),
    )


def search_arg(name: str = "q") -> str:
    """A search box's text: refused, like every text input, if it holds unsafe characters."""
    value = request.args.get(name, "").strip()[:200]
    why = text.problem(value)
    if why is not None:
        abort(400, description=f"The search {why}.")
    return value


# The audit browser lives in its own module; importing it registers its routes.
from app.admin import account_views, audit_views, key_limits, twofactor_views  # noqa: E402, F401
