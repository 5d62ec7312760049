import re

from flask import abort, flash, make_response, redirect, render_template, session, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required
from sqlalchemy import select

from app.audit import service as audit_service
from app.extensions import db
from app.keys import lifecycle
from app.keys.lifecycle import NewKey
from app.models import ApiKey, AuditEvent
from app.portal import bp
from app.portal.forms import NewKeyForm, RevokeForm, RotateForm
from app.web import client_ip, key_policy

_SPLIT = re.compile(r"[\s,]+")
_SEEN = "minted_forms"


@bp.route("/")
def index() -> ResponseReturnValue:
    return redirect(url_for("portal.keys" if current_user.is_authenticated else "auth.login"))


@bp.route("/keys")
@login_required
def keys() -> ResponseReturnValue:
    rows = db.session.scalars(
        select(ApiKey).where(ApiKey.user_id == current_user.id).order_by(ApiKey.created_at.desc())
    ).all()
    policy = key_policy()
    return render_template(
        "portal/keys.html", keys=rows, status=lambda k: lifecycle.status(k, policy)
    )


def _already_minted(token: str | None) -> ResponseReturnValue | None:
    """A form token we have seen: send the user to the key instead of minting again."""
    public_id = session.get(_SEEN, {}).get(token) if token else None
    if public_id is None:
        return None
    flash("That form was already sent. The key's secret is shown only once.", "warning")
    return redirect(url_for("portal.key_detail", public_id=public_id))


def _show_once(token: str | None, new: NewKey, title: str) -> ResponseReturnValue:
    if token:
        seen = dict(session.get(_SEEN, {}))
        seen[token] = new.key.public_id
        session[_SEEN] = dict(list(seen.items())[-20:])
    response = make_response(render_template("portal/created.html", new=new, title=title))
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


@bp.route("/keys/new", methods=["GET", "POST"])
@login_required
def new_key() -> ResponseReturnValue:
    form = NewKeyForm()
    policy = key_policy()
    form.set_cap(policy.max_lifetime(current_user.tier))
    if form.is_submitted() and (seen := _already_minted(form.form_token.data)):
        return seen
    if form.validate_on_submit():
        custom = _SPLIT.split(form.custom_scopes.data or "")
        try:
            new = lifecycle.create_key(
                db.session,
                policy,
                current_user,
                name=form.name.data or "",
                scopes=[*(form.scopes.data or []), *custom],
                lifetime_days=form.lifetime_days.data or 0,
                actor_ip=client_ip(),
            )
        except lifecycle.KeyRequestError as exc:
            db.session.rollback()
            form.custom_scopes.errors = [*form.custom_scopes.errors, str(exc)]
        else:
            return _show_once(form.form_token.data, new, "Your new API key")
    return render_template("portal/new.html", form=form), 400 if form.errors else 200


def _own_key_or_404(public_id: str) -> ApiKey:
    key = lifecycle.find_own_key(db.session, current_user, public_id, actor_ip=client_ip())
    if key is None:
        abort(404)
    return key


@bp.route("/keys/<public_id>")
@login_required
def key_detail(public_id: str) -> ResponseReturnValue:
    key = _own_key_or_404(public_id)
    events = db.session.scalars(
        select(AuditEvent)
        .where(AuditEvent.target == f"key:{key.public_id}")
        # Insertion order: seq stays empty until the sealer places the event.
        .order_by(AuditEvent.id.desc())
        .limit(20)
    ).all()
    return render_template(
        "portal/key.html",
        key=key,
        status=lifecycle.status(key, key_policy()),
        events=events,
        rotate_form=RotateForm(),
        revoke_form=RevokeForm(),
        receipts=audit_service.receipts_for_key(key.public_id, limit=20),
    )


@bp.route("/keys/<public_id>/revoke", methods=["POST"])
@login_required
def revoke(public_id: str) -> ResponseReturnValue:
    key = _own_key_or_404(public_id)
    form = RevokeForm()
    if not form.validate_on_submit():
        flash("Tick the confirmation box to revoke the key. Nothing was changed.", "error")
        return redirect(url_for("portal.key_detail", public_id=public_id))
    if lifecycle.revoke_key(db.session, key, actor=current_user, actor_ip=client_ip()):
        flash(f"Key “{key.name}” is revoked.", "success")
    else:
        flash("The key was already revoked.", "info")
    return redirect(url_for("portal.key_detail", public_id=public_id))


@bp.route("/keys/<public_id>/rotate", methods=["POST"])
@login_required
def rotate(public_id: str) -> ResponseReturnValue:
    key = _own_key_or_404(public_id)
    form = RotateForm()
    if seen := _already_minted(form.form_token.data):
        return seen
    if not form.validate_on_submit():
        flash("Choose when the old key stops working. Nothing was changed.", "error")
        return redirect(url_for("portal.key_detail", public_id=public_id))
    try:
        new = lifecycle.rotate_key(
            db.session,
            key_policy(),
            key,
            grace=form.grace.data,
            actor=current_user,
            actor_ip=client_ip(),
        )
    except lifecycle.KeyRequestError as exc:
        db.session.rollback()
        flash(f"{exc}. Nothing was changed.", "error")
        return redirect(url_for("portal.key_detail", public_id=public_id))
    return _show_once(form.form_token.data, new, "Your rotated API key")


@bp.route("/keys/<public_id>/usage.json")
@login_required
def key_usage(public_id: str) -> ResponseReturnValue:
    """The key page's usage chart data: the owner's only (anyone else: 404, audited)."""
    from datetime import UTC, datetime

    from flask import jsonify, request

    from app.usage import queries

    key = _own_key_or_404(public_id)
    range_name = request.args.get("range", "day")
    try:
        payload = queries.chart(db.session, key, range_name, datetime.now(UTC))
    except queries.UsageQueryError as exc:
        return jsonify({"error": "bad_request", "message": str(exc)}), 400
    response = jsonify({"key_id": key.public_id, **payload})
    response.headers["Cache-Control"] = "private, no-store"
    return response
