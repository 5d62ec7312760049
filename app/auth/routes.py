from urllib.parse import urlsplit

from flask import current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required, login_user, logout_user

from app import accounts
from app.audit import trail
from app.auth import bp
from app.auth.forms import LoginForm, LogoutForm, RegisterForm
from app.extensions import db, limiter
from app.web import client_ip, passwords


def _safe_next(target: str | None) -> str:
    """Only same-site paths: an open redirect would make our login page a phishing aid."""
    if target and target.startswith("/") and not target.startswith("//"):
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and "\\" not in target:
            return target
    return url_for("portal.dashboard")


def _login_limit() -> str:
    return current_app.config["LOGIN_RATE_LIMIT"]


@bp.route("/register", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
def register() -> ResponseReturnValue:
    if not current_app.config["REGISTRATION_OPEN"]:
        return render_template("auth/closed.html"), 403
    if current_user.is_authenticated:
        return redirect(url_for("portal.keys"))
    form = RegisterForm()
    if form.validate_on_submit():
        try:
            user = accounts.create_user(
                db.session,
                passwords(),
                email=form.email.data or "",
                password=form.password.data or "",
                actor_ip=client_ip(),
            )
        except accounts.AccountError as exc:
            db.session.rollback()
            form.email.errors.append(str(exc))
        else:
            login_user(user)
            flash("Welcome to Keyledger. Create your first API key below.", "success")
            return redirect(url_for("portal.keys"))
    return render_template("auth/register.html", form=form), 400 if form.errors else 200


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
def login() -> ResponseReturnValue:
    if current_user.is_authenticated:
        return redirect(url_for("portal.dashboard"))
    form = LoginForm()
    if form.validate_on_submit():
        user = accounts.authenticate(
            db.session,
            passwords(),
            email=form.email.data or "",
            password=form.password.data or "",
            actor_ip=client_ip(),
        )
        if user is not None:
            login_user(user)
            return redirect(_safe_next(request.args.get("next")))
        form.password.errors.append("Email or password is wrong.")
    return render_template("auth/login.html", form=form), 400 if form.errors else 200


@bp.route("/logout", methods=["POST"])
@login_required
def logout() -> ResponseReturnValue:
    form = LogoutForm()
    if form.validate_on_submit():
        trail.record(
            db.session,
            "user.logout",
            actor=f"user:{current_user.id}",
            actor_ip=client_ip(),
            target=f"user:{current_user.id}",
        )
        db.session.commit()
        logout_user()
        flash("You are logged out.", "info")
    return redirect(url_for("auth.login"))
