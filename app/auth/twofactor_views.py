"""/account/two-factor: authenticator app, recovery codes, passkeys; and the admins'
requirement enforced on every portal page. Thin: app/twofactor.py decides."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import segno
from flask import current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required
from wtforms import Field

from app import accounts, notices, twofactor
from app.auth import bp
from app.auth.forms import RecoveryCodesForm, TotpConfirmForm, TotpDisableForm, TotpStartForm
from app.extensions import db
from app.web import client_ip, forms_page, key_policy, passwords, refused


def _issuer() -> str:
    return str(current_app.config.get("MFA_ISSUER") or "Keyledger")


def _notify(change: str) -> None:
    notices.send(current_user, "2fa_changed", change=change, ip_address=client_ip() or "unknown")


def _page(codes: list[str] | None = None, **forms: object) -> ResponseReturnValue:
    forms = {
        "start_form": TotpStartForm(formdata=None),
        "confirm_form": TotpConfirmForm(formdata=None),
        "disable_form": TotpDisableForm(formdata=None),
        "codes_form": RecoveryCodesForm(formdata=None),
        **forms,
    }
    setup = twofactor.pending_setup(db.session, key_policy().pepper, current_user, issuer=_issuer())
    qr = None
    if setup is not None:
        # Server-side SVG as a data: image: no script, no CDN, nothing fetched elsewhere.
        qr = segno.make(setup.uri, error="m").svg_data_uri(scale=5, dark="#111", light="#fff")
    from app import passkeys

    return forms_page(
        "auth/two_factor.html",
        forms,
        setup=setup,
        qr=qr,
        codes=codes,
        totp_on=twofactor.has_totp(db.session, current_user),
        codes_left=twofactor.recovery_codes_left(db.session, current_user),
        keys=passkeys.listed(db.session, current_user),
        need=twofactor.requirement(db.session, current_user, current_app.config),
    )


@bp.route("/account/two-factor")
@login_required
def two_factor() -> ResponseReturnValue:
    return _page()


@bp.route("/account/two-factor/totp/start", methods=["POST"])
@login_required
def totp_start() -> ResponseReturnValue:
    form = TotpStartForm()
    if form.validate_on_submit():
        try:
            twofactor.begin_totp(db.session, key_policy().pepper, current_user, issuer=_issuer())
        except accounts.AccountError as exc:
            flash(str(exc), "error")
    return redirect(url_for("auth.two_factor") + "#totp")


def _authorised(
    form: Any, change: Callable[..., Any], field: Field, **code: str
) -> tuple[bool, Any]:
    """Run a change of the user's second factor that their password (and `code`, when
    given) authorises: (True, its result), or (False, None) with the reason under
    `field`."""
    try:
        result = change(
            db.session,
            passwords(),
            key_policy().pepper,
            current_user,
            password=form.password.data or "",
            actor_ip=client_ip(),
            **code,
        )
    except accounts.AccountError as exc:
        refused(field, exc)
        return False, None
    return True, result


@bp.route("/account/two-factor/totp/confirm", methods=["POST"])
@login_required
def totp_confirm() -> ResponseReturnValue:
    form = TotpConfirmForm()
    if form.validate_on_submit():
        done, codes = _authorised(
            form, twofactor.confirm_totp, form.code, code=form.code.data or ""
        )
        if done:
            _notify("An authenticator app was turned on")
            flash("Two-factor sign-in is on. Keep your recovery codes somewhere safe.", "success")
            return _page(codes=codes)
    return _page(confirm_form=form)


@bp.route("/account/two-factor/totp/disable", methods=["POST"])
@login_required
def totp_disable() -> ResponseReturnValue:
    form = TotpDisableForm()
    if form.validate_on_submit():
        done, _ = _authorised(form, twofactor.disable_totp, form.code, code=form.code.data or "")
        if done:
            _notify("The authenticator app was turned off")
            flash("The authenticator app is off.", "success")
            return redirect(url_for("auth.two_factor"))
    return _page(disable_form=form)


@bp.route("/account/two-factor/recovery-codes", methods=["POST"])
@login_required
def recovery_codes() -> ResponseReturnValue:
    form = RecoveryCodesForm()
    if form.validate_on_submit():
        done, codes = _authorised(form, twofactor.regenerate_recovery_codes, form.password)
        if done:
            _notify("New recovery codes were made; the old ones stopped working")
            return _page(codes=codes)
    return _page(codes_form=form)


# Reachable while a required second factor is missing: setting it up, logging out.
_OPEN_ENDPOINTS = frozenset(
    {"auth.logout", "auth.login", "static", "auth.account", "auth.change_password"}
)


@bp.before_app_request
def _require_second_factor() -> ResponseReturnValue | None:
    """The admins' requirement: past the grace period every portal page leads to the
    set-up; admin actions are refused at once without a second factor."""
    if request.path.startswith(("/api/", "/static/", "/audit/")) or request.endpoint is None:
        return None
    if not current_user.is_authenticated:
        return None
    endpoint = request.endpoint
    if endpoint in _OPEN_ENDPOINTS or endpoint.startswith(("auth.two_factor", "auth.totp")):
        return None
    if endpoint.startswith("auth.passkey"):
        return None
    value, _ = twofactor.policy(db.session, current_app.config)
    if value == "none":
        return None
    need = twofactor.requirement(db.session, current_user, current_app.config)
    if not need.required or need.deadline is None:
        return None
    if endpoint.startswith("admin.") and current_user.is_admin and request.method != "GET":
        return render_template("auth/two_factor_required.html", need=need), 403
    if need.overdue():
        flash("Two-factor sign-in is required for your account: set it up to go on.", "warning")
        return redirect(url_for("auth.two_factor"))
    return None
