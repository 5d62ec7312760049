"""Admins and two-factor sign-in: who must use it (a switch on /admin/two-factor,
critical in the trail), and resetting a locked-out user's second factor (critical).
Thin: app/twofactor.py decides and audits."""

from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from wtforms import BooleanField, RadioField, SubmitField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired

from app import accounts, notices, twofactor
from app.admin import bp
from app.extensions import db
from app.forms import Form
from app.models import User
from app.web import client_ip, refused

POLICY_LABELS = {
    "none": "Nobody: each person chooses",
    "admins": "Admins must use two-factor sign-in",
    "everyone": "Everyone must use two-factor sign-in",
}


class PolicyForm(Form):
    policy = RadioField(
        "Who must use two-factor sign-in",
        choices=[SelectChoice(value, label) for value, label in POLICY_LABELS.items()],
        validators=[DataRequired(message="Choose one.")],
    )
    submit = SubmitField("Save")


class ResetSecondFactorForm(Form):
    confirm_reset = BooleanField(
        "Remove this user's authenticator app, passkeys and recovery codes",
        validators=[DataRequired(message="Tick the box to confirm.")],
    )
    submit = SubmitField("Reset second factor")


def user_context(user: User) -> dict[str, object]:
    """What the admin user page shows about the user's second factor."""
    return {
        "tfa_totp": twofactor.has_totp(db.session, user),
        "tfa_passkeys": twofactor.passkey_count(db.session, user),
        "tfa_reset_form": ResetSecondFactorForm(formdata=None),
    }


@bp.route("/two-factor", methods=["GET", "POST"])
def two_factor_policy() -> ResponseReturnValue:
    value, since = twofactor.policy(db.session, current_app.config)
    form = PolicyForm(data={"policy": value})
    if form.validate_on_submit():
        try:
            changed = twofactor.set_policy(
                db.session, form.policy.data, actor=f"user:{current_user.id}", actor_ip=client_ip()
            )
        except accounts.AccountError as exc:
            refused(form.policy, exc)
        else:
            flash("Saved." if changed else "Nothing to change.", "success" if changed else "info")
            return redirect(url_for("admin.two_factor_policy"))
    return render_template(
        "admin/two_factor.html",
        form=form,
        value=value,
        since=since,
        grace_days=int(current_app.config.get("MFA_GRACE_DAYS", 7)),
    ), (400 if form.errors else 200)


@bp.route("/users/<int:user_id>/two-factor/reset", methods=["POST"])
def reset_second_factor(user_id: int) -> ResponseReturnValue:
    user = (db.session.get(User, user_id) if user_id < 2**31 else None) or abort(404)
    back = redirect(url_for("admin.user_detail", user_id=user.id))
    if not ResetSecondFactorForm().validate_on_submit():
        flash("Tick the confirmation box. Nothing was changed.", "error")
        return back
    if twofactor.reset_second_factor(
        db.session, user, actor=f"user:{current_user.id}", actor_ip=client_ip()
    ):
        notices.send(
            user,
            "2fa_changed",
            change="An administrator removed your second factors; set one up again",
            ip_address=client_ip() or "unknown",
        )
        flash(
            f"{user.email}'s second factors are removed; they log in with the password.", "success"
        )
    else:
        flash("That user had no second factor.", "info")
    return back
