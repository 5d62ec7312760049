"""Forgot password: ask for a link, follow it, set a new password. Thin:
app/password_reset.py decides, app/notices.py and app/mail.py send."""

from __future__ import annotations

from flask import current_app, flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user

from app import accounts, limiter, notices, password_reset, ratelimit
from app.auth import bp
from app.auth.forms import ForgotForm, ResetForm
from app.extensions import db
from app.mail import Mail, mailer
from app.web import client_ip, key_policy, passwords, refused


def _ip_limit() -> str:
    return current_app.config["PASSWORD_RESET_IP_LIMIT"]


@bp.route("/forgot", methods=["GET", "POST"])
@limiter.limit(_ip_limit, methods=["POST"])
def forgot() -> ResponseReturnValue:
    """The same page whether the address is known, unknown or over its budget: the
    answer says nothing about which accounts exist."""
    if current_user.is_authenticated:
        return redirect(url_for("auth.account"))
    form = ForgotForm()
    if form.validate_on_submit():
        email = form.email.data or ""
        budget = accounts.throttle_id(email)
        if ratelimit.spend_budget(
            current_app.config["PASSWORD_RESET_ADDRESS_LIMIT"], "reset", budget
        ):
            made = password_reset.request_reset(
                db.session, key_policy().pepper, email, actor_ip=client_ip()
            )
            if made is not None:
                user, token = made
                link = url_for("auth.reset", token=token, _external=True)
                context = {"link": link, "minutes": password_reset.RESET_MINUTES}
                mailer().send(
                    Mail(
                        to=user.email,
                        subject="Reset your Keyledger password",
                        text=render_template("mail/reset.txt", **context),
                        html=render_template("mail/reset.html", **context),
                    )
                )
        return render_template("auth/forgot_sent.html", minutes=password_reset.RESET_MINUTES)
    return render_template("auth/forgot.html", form=form), 400 if form.errors else 200


@bp.route("/reset/<token>", methods=["GET", "POST"])
@limiter.limit(_ip_limit, methods=["POST"])
def reset(token: str) -> ResponseReturnValue:
    """GET changes nothing (mail scanners open links); POST sets the password."""
    pepper = key_policy().pepper
    if password_reset.link_user(db.session, pepper, token) is None:
        return render_template("auth/reset_dead.html"), 400
    form = ResetForm()
    if form.validate_on_submit():
        try:
            user = password_reset.reset(
                db.session,
                passwords(),
                pepper,
                token,
                form.password.data or "",
                actor_ip=client_ip(),
            )
        except password_reset.ResetRefused:
            db.session.rollback()
            return render_template("auth/reset_dead.html"), 400
        except accounts.AccountError as exc:
            refused(form.password, exc)
        else:
            notices.send(
                user,
                "password_changed",
                how="reset through a mailed link",
                ip_address=client_ip() or "unknown",
            )
            flash("Your password is changed and every session ended. Log in with it.", "success")
            return redirect(url_for("auth.login"))
    return render_template("auth/reset.html", form=form), 400 if form.errors else 200
