"""/account: password, sessions, closing the account. Thin: app/accounts.py decides."""

from __future__ import annotations

from flask import flash, redirect, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required, logout_user
from wtforms.fields.choices import SelectChoice

from app import accounts, notices, sessions
from app.auth import bp
from app.auth.forms import (
    CloseAccountForm,
    EndOthersForm,
    EndSessionForm,
    NoticesForm,
    PasswordChangeForm,
)
from app.extensions import db
from app.web import (
    client_ip,
    current_session_id,
    forms_page,
    passwords,
    refused,
    session_lifetimes,
)


def _notices_form(formdata: object = None) -> NoticesForm:
    form = NoticesForm(formdata=formdata) if formdata is not None else NoticesForm(formdata=None)
    form.wanted.choices = [SelectChoice(k, notices.KINDS[k].label) for k in notices.OPTIONAL]
    if formdata is None:
        off = notices.turned_off(current_user)
        form.wanted.data = [k for k in notices.OPTIONAL if k not in off]
    return form


def _page(**forms: object) -> ResponseReturnValue:
    forms = {
        "notices_form": _notices_form(),
        "password_form": PasswordChangeForm(formdata=None),
        "others_form": EndOthersForm(formdata=None),
        "close_form": CloseAccountForm(formdata=None),
        **forms,
    }
    return forms_page(
        "auth/account.html",
        forms,
        sessions=sessions.active(db.session, current_user.id, session_lifetimes()),
        this_session=current_session_id(),
        device=sessions.device,
        security_notices=[v.label for v in notices.KINDS.values() if v.security],
        end_form=EndSessionForm(formdata=None),
    )


@bp.route("/account")
@login_required
def account() -> ResponseReturnValue:
    return _page()


@bp.route("/account/notices", methods=["POST"])
@login_required
def save_notices() -> ResponseReturnValue:
    form = _notices_form(request.form)
    if form.validate_on_submit():
        wanted = set(form.wanted.data or [])
        notices.set_turned_off(
            db.session, current_user, [k for k in notices.OPTIONAL if k not in wanted]
        )
        flash("Mail settings saved.", "success")
        return redirect(url_for("auth.account") + "#notices")
    return _page(notices_form=form)


@bp.route("/account/password", methods=["POST"])
@login_required
def change_password() -> ResponseReturnValue:
    form = PasswordChangeForm()
    if form.validate_on_submit():
        try:
            ended = accounts.change_password(
                db.session,
                passwords(),
                current_user,
                current=form.current.data or "",
                new=form.password.data or "",
                keep_session=current_session_id(),
                actor_ip=client_ip(),
            )
        except accounts.AccountError as exc:
            refused(form.current, exc)
        else:
            notices.send(
                current_user,
                "password_changed",
                how="changed on the account page",
                ip_address=client_ip() or "unknown",
            )
            others = f"{ended} other session{'s' if ended != 1 else ''}"
            flash(f"Password changed. {others.capitalize()} ended.", "success")
            return redirect(url_for("auth.account"))
    return _page(password_form=form)


@bp.route("/account/sessions/end", methods=["POST"])
@login_required
def end_session() -> ResponseReturnValue:
    form = EndSessionForm()
    if not form.validate_on_submit():
        flash("That session could not be ended. Nothing was changed.", "error")
        return redirect(url_for("auth.account"))
    target = form.session_id.data
    if target == current_session_id():
        return redirect(url_for("auth.account"))  # "End" is not offered for this one
    if accounts.end_session(db.session, current_user, target or 0, actor_ip=client_ip()):
        flash("Session ended: that browser is logged out.", "success")
    else:
        flash("That session had already ended.", "info")
    return redirect(url_for("auth.account"))


@bp.route("/account/sessions/end-others", methods=["POST"])
@login_required
def end_other_sessions() -> ResponseReturnValue:
    form = EndOthersForm()
    if form.validate_on_submit():
        ended = accounts.end_other_sessions(
            db.session, current_user, keep_session=current_session_id(), actor_ip=client_ip()
        )
        flash(
            f"Logged out everywhere else: {ended} session{'s' if ended != 1 else ''} ended.",
            "success",
        )
    return redirect(url_for("auth.account"))


@bp.route("/account/close", methods=["POST"])
@login_required
def close_account() -> ResponseReturnValue:
    form = CloseAccountForm()
    if form.validate_on_submit():
        try:
            revoked = accounts.close_account(
                db.session,
                passwords(),
                current_user,
                password=form.password.data or "",
                actor_ip=client_ip(),
            )
        except accounts.AccountError as exc:
            refused(form.password, exc)
        else:
            logout_user()
            flash(
                f"Your account is closed; {revoked} key{'s' if revoked != 1 else ''} revoked.",
                "info",
            )
            return redirect(url_for("auth.login"))
    return _page(close_form=form)
