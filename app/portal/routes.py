from typing import Any

from flask import (
    abort,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required
from sqlalchemy import bindparam, select

from app.audit import service as audit_service
from app.extensions import db
from app.keys import history, lifecycle, listing
from app.keys.lifecycle import NewKey
from app.models import ApiKey
from app.models._types import utcnow
from app.portal import bp, usage_views
from app.portal.forms import EditKeyForm, NewKeyForm, RevokeForm, RotateForm
from app.web import client_ip, key_policy, page_of, refused

_SEEN = "minted_forms"


@bp.route("/")
def index() -> ResponseReturnValue:
    return redirect(url_for("portal.dashboard" if current_user.is_authenticated else "auth.login"))


# The columns the keys list shows (and status() reads), as plain rows: loading 50 whole
# ORM objects cost the page more than rendering them (docs/performance.md, "The keys page").
# The table's own columns, so the unfiltered list runs as Core (lifecycle.KEY_COLUMNS).
_KEY = lifecycle.KEY_COLUMNS
_LISTED = (
    _KEY.id,
    _KEY.public_id,
    _KEY.prefix,
    _KEY.name,
    _KEY.test,
    _KEY.scopes,
    _KEY.created_at,
    _KEY.expires_at,
    _KEY.revoked_at,
    _KEY.last_used_at,
    _KEY.last_used_ip,
)
# The list's statement, built once (with the pager's order, app/pager.py); a filter adds
# its conditions to it per request.
_KEYS = select(*_LISTED).where(_KEY.user_id == bindparam("owner", type_=ApiKey.user_id.type))


@bp.route("/keys")
@login_required
def keys() -> ResponseReturnValue:
    try:
        wanted = listing.KeyFilter.from_args(request.args)
    except listing.FilterError as exc:
        abort(400, description=str(exc))
    policy = key_policy()
    now = utcnow()  # one moment for the whole page: the counts, the filter, each badge
    counts = lifecycle.status_counts(db.session, current_user.id, policy, now)
    total = sum(counts.values())
    live_only = wanted == listing.KeyFilter(status="live")
    hidden = 0
    if live_only:
        hidden = counts.pop("expired", 0) + counts.pop("revoked", 0)
    where = wanted.conditions(db.session, current_user.id, policy.expiring_days, now)
    page = page_of(
        _KEYS.where(*where) if where else _KEYS,
        columns={"created": _KEY.created_at},
        default_sort="created",
        default_desc=True,
        tiebreak=_KEY.id,
        args=wanted.args(),
        scalars=False,
        # Unfiltered (or live keys only), the counts above already say how many rows.
        total=total - hidden if live_only or not wanted.active else None,
        params={"owner": current_user.id},
    )
    rows = page.items
    whole = not wanted.active and page.number == 1 and page.pages == 1  # every key is here
    return render_template(
        "portal/keys.html",
        keys=rows,
        page=page,
        counts=counts,
        total=total,
        status=lambda k: lifecycle.status(k, policy, now),
        superseded=lifecycle.superseded_ids(db.session, (k.id for k in rows)),
        wanted=wanted,
        live_only=live_only,
        hidden_count=hidden,
        statuses=listing.STATUSES,
        used_choices=listing.USED,
        scopes=listing.scopes_of(k.scopes for k in rows)
        if whole
        else listing.scopes_in_use(db.session, current_user.id),
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
    form.set_cap(policy.max_lifetime(current_user.tier), utcnow().date())
    if form.is_submitted() and (seen := _already_minted(form.form_token.data)):
        return seen
    if form.validate_on_submit():
        custom = form.custom_list()
        if not [*(form.scopes.data or []), *custom] and not form.no_scope_ok.data:
            form.scopes.errors = [
                "A key with no scope can be validated but allows nothing. "
                "Pick a scope, or tick the box below to create it anyway."
            ]
            return render_template("portal/new.html", form=form, ask_no_scope=True), 400
        try:
            new = lifecycle.create_key(
                db.session,
                policy,
                current_user,
                name=form.name.data or "",
                scopes=[*(form.scopes.data or []), *custom],
                lifetime_days=form.lifetime_days.data or 0,
                actor_ip=client_ip(),
                test=bool(form.test.data),
            )
        except lifecycle.KeyRequestError as exc:
            refused(form.custom_scopes, exc)
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
    return key_page(_own_key_or_404(public_id))


def key_page(key: ApiKey, **extra: Any) -> str:
    """The key's page; `extra` carries a refused form's values and errors back to it."""
    return render_template(
        "portal/key.html",
        key=key,
        status=lifecycle.status(key, key_policy()),
        activity=history.recent_activity(db.session, key),
        lineage=history.lineage(db.session, key),
        edit_form=EditKeyForm(obj=key),
        rotate_form=RotateForm(),
        revoke_form=RevokeForm(),
        **usage_views.key_page_usage(key),
        receipts=audit_service.receipts_for_key(key.public_id, limit=20),
        **extra,
    )


@bp.route("/keys/<public_id>/edit", methods=["POST"])
@login_required
def edit(public_id: str) -> ResponseReturnValue:
    key = _own_key_or_404(public_id)
    form = EditKeyForm()
    if form.validate_on_submit():
        try:
            changed = lifecycle.update_key(
                db.session,
                key,
                name=form.name.data or "",
                note=form.note.data,
                actor=current_user,
                actor_ip=client_ip(),
            )
        except lifecycle.KeyRequestError as exc:
            refused(form.name, exc)
        else:
            flash("Saved." if changed else "Nothing changed.", "success" if changed else "info")
            return redirect(url_for("portal.key_detail", public_id=public_id))
    problems = " ".join(f"{form[n].label.text}: {' '.join(e)}" for n, e in form.errors.items())
    flash(f"Not saved. {problems}", "error")
    return redirect(url_for("portal.key_detail", public_id=public_id))


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
    except lifecycle.AlreadyRotated:
        db.session.rollback()
        flash(
            "This key was already rotated: rotate its successor instead. Nothing was changed.",
            "error",
        )
        return redirect(url_for("portal.key_detail", public_id=public_id))
    except lifecycle.KeyRequestError as exc:
        db.session.rollback()
        flash(f"{exc}. Nothing was changed.", "error")
        return redirect(url_for("portal.key_detail", public_id=public_id))
    return _show_once(form.form_token.data, new, "Your rotated API key")
