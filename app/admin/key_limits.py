"""An admin gives one key its own rate limit (overriding its owner's tier)."""

from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from sqlalchemy import select

from app import ratelimit
from app.admin import bp
from app.extensions import db
from app.keys import format as keyformat
from app.keys import lifecycle, policies
from app.models import ApiKey
from app.web import client_ip, key_policy


def _key_or_404(public_id: str) -> ApiKey:
    if not keyformat.is_public_id(public_id):
        abort(404)
    key = db.session.scalar(select(ApiKey).where(ApiKey.public_id == public_id))
    return key or abort(404)


@bp.route("/keys/<public_id>/limit", methods=["GET", "POST"])
def key_limit(public_id: str) -> ResponseReturnValue:
    key = _key_or_404(public_id)
    error = typed = None
    if request.method == "POST":
        typed = request.form.get("rate_limit", "").strip()[:20]
        try:
            changed = policies.set_rate_limit(
                db.session,
                key,
                typed,
                actor=current_user,
                actor_ip=client_ip(),
            )
        except lifecycle.KeyRequestError as exc:
            db.session.rollback()
            error = f"{exc}. Nothing was changed."
        else:
            flash("Rate limit saved." if changed else "Rate limit unchanged.", "success")
            return redirect(url_for("admin.key_limit", public_id=public_id))
    config = current_app.config
    return render_template(
        "admin/key_limit.html",
        key=key,
        status=lifecycle.status(key, key_policy()),
        tier_limit=ratelimit.tier_limit(key.tier, config),
        limit=ratelimit.effective_limit(key.tier, key.rate_limit, config, key.owner_rate_limit),
        error=error,
        typed=typed if error else None,  # a refused value stays in the field
    ), (400 if error else 200)
