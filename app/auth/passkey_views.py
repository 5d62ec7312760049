"""Passkey ceremonies over JSON (static/js/passkeys.js): add one on
/account/two-factor, use one at the code step or to log in on its own. Thin:
app/passkeys.py decides. The challenge waits in the session for five minutes."""

from __future__ import annotations

import base64
import json
import time

from flask import current_app, flash, jsonify, redirect, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required

from app import accounts, limiter, notices, passkeys, ratelimit
from app.auth import bp
from app.auth.routes import (
    _account_limit,
    _ip_breach,
    _login_limit,
    _throttled,
    finish_login,
    pending_user,
)
from app.extensions import db
from app.web import client_ip, key_policy, passwords

CHALLENGE_SECONDS = 300


def _rp() -> passkeys.RelyingParty:
    """The site as WebAuthn names it: WEBAUTHN_RP_ID / WEBAUTHN_ORIGIN, or (for
    development) the host the browser asked for."""
    origin = current_app.config.get("WEBAUTHN_ORIGIN") or request.host_url.rstrip("/")
    rp_id = current_app.config.get("WEBAUTHN_RP_ID") or request.host.rsplit(":", 1)[0]
    return passkeys.RelyingParty(rp_id, origin)


def _keep(purpose: str, challenge: bytes) -> None:
    session[f"webauthn_{purpose}"] = [base64.b64encode(challenge).decode(), int(time.time())]


def _take(purpose: str) -> bytes | None:
    kept = session.pop(f"webauthn_{purpose}", None)
    if not (isinstance(kept, list) and len(kept) == 2 and isinstance(kept[1], int)):
        return None
    if not 0 <= time.time() - kept[1] <= CHALLENGE_SECONDS:
        return None
    try:
        return base64.b64decode(str(kept[0]), validate=True)
    except ValueError:
        return None


def _problem(message: str, status: int = 400) -> ResponseReturnValue:
    return jsonify(error=message), status


def _body() -> dict:
    body = request.get_json(silent=True)
    return body if isinstance(body, dict) else {}


@bp.route("/account/passkeys/options", methods=["POST"])
@login_required
def passkey_register_options() -> ResponseReturnValue:
    options, challenge = passkeys.registration_options(db.session, _rp(), current_user)
    _keep("register", challenge)
    return current_app.response_class(options, mimetype="application/json")


@bp.route("/account/passkeys", methods=["POST"])
@login_required
def passkey_register() -> ResponseReturnValue:
    challenge = _take("register")
    body = _body()
    if challenge is None:
        return _problem("The set-up took too long. Try again.")
    name, credential = body.get("name"), body.get("credential")
    if not isinstance(name, str) or not isinstance(credential, dict):
        return _problem("Send {name, credential}.")
    try:
        _, codes = passkeys.register(
            db.session,
            _rp(),
            key_policy().pepper,
            current_user,
            credential=json.dumps(credential),
            challenge=challenge,
            name=name,
            actor_ip=client_ip(),
        )
    except accounts.AccountError as exc:
        db.session.rollback()
        return _problem(str(exc))
    notices.send(
        current_user,
        "2fa_changed",
        change=f"A passkey was added ({name[:64]})",
        ip_address=client_ip() or "unknown",
    )
    return jsonify(ok=True, codes=codes)


@bp.route("/account/passkeys/<int:passkey_id>/remove", methods=["POST"])
@login_required
def passkey_remove(passkey_id: int) -> ResponseReturnValue:
    from app.auth.forms import PasskeyRemoveForm

    form = PasskeyRemoveForm()
    if not form.validate_on_submit():
        flash("Enter your password to remove a passkey. Nothing was changed.", "error")
        return redirect(url_for("auth.two_factor") + "#passkeys")
    try:
        name = passkeys.remove(
            db.session,
            passwords(),
            current_user,
            passkey_id,
            password=form.password.data or "",
            actor_ip=client_ip(),
        )
    except accounts.AccountError as exc:
        db.session.rollback()
        flash(str(exc), "error")
    else:
        notices.send(
            current_user,
            "2fa_changed",
            change=f"A passkey was removed ({name})",
            ip_address=client_ip() or "unknown",
        )
        flash(f"Passkey “{name}” removed.", "success")
    return redirect(url_for("auth.two_factor") + "#passkeys")


@bp.route("/login/passkey/options", methods=["POST"])
@limiter.limit(_login_limit, methods=["POST"], on_breach=_ip_breach)
def passkey_login_options() -> ResponseReturnValue:
    if current_user.is_authenticated:
        return _problem("You are already logged in.", 409)
    options, challenge = passkeys.authentication_options(db.session, _rp(), pending_user())
    _keep("login", challenge)
    return current_app.response_class(options, mimetype="application/json")


@bp.route("/login/passkey", methods=["POST"])
@limiter.limit(_login_limit, methods=["POST"], on_breach=_ip_breach)
def passkey_login() -> ResponseReturnValue:
    """After a right password (the code step) or on its own; answers where to go."""
    if current_user.is_authenticated:
        return _problem("You are already logged in.", 409)
    challenge = _take("login")
    credential = _body().get("credential")
    if challenge is None or not isinstance(credential, dict):
        return _problem("The sign-in took too long or was malformed. Try again.")
    user = pending_user()
    if user is not None:
        # Spent first, atomically, as the password and code steps do.
        budget = accounts.throttle_id(user.email)
        if not ratelimit.spend_budget(_account_limit(), "login-account", budget):
            retry = ratelimit.budget_spent(_account_limit(), "login-account", budget) or 60
            return _throttled(user.email, retry, "account")
    next_url = session.get("2fa_next") or request.args.get("next")
    try:
        owner = passkeys.authenticate(
            db.session,
            _rp(),
            credential=json.dumps(credential),
            challenge=challenge,
            user=user,
            actor_ip=client_ip(),
        )
    except accounts.AccountError as exc:
        db.session.rollback()
        return _problem(str(exc))
    response = finish_login(owner, next_url or None, {"factor": "passkey"})
    target = response.headers.pop("Location")  # type: ignore[union-attr]
    response.status_code = 200  # type: ignore[union-attr]
    response.set_data(json.dumps({"redirect": target}))  # type: ignore[union-attr]
    response.mimetype = "application/json"  # type: ignore[union-attr]
    return response
