"""Admin actions on an account: disable / enable, grant / remove admin.

Forms (CSRF) on the admin user page, from templates/admin/_user_account_actions.html;
app/accounts.py decides and audits."""

from __future__ import annotations

from flask import abort, flash, redirect, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from wtforms import BooleanField, SubmitField
from wtforms.validators import DataRequired

from app import accounts
from app.admin import bp
from app.extensions import db
from app.forms import Form
from app.models import User
from app.web import client_ip


class DisableForm(Form):
    confirm = BooleanField(
        "Revoke every live key of this user and end their sessions",
        validators=[DataRequired(message="Tick the box to confirm.")],
    )
    submit = SubmitField("Disable account")


class GrantAdminForm(Form):
    """Granting admin hands over every account, key and the audit trail: ticked on
    purpose, like disabling. Removing it (or enabling an account) takes power away and
    needs no box."""

    # Not "confirm": the disable form beside it on the same page has that id.
    confirm_grant = BooleanField(
        "Give this account every admin power: all users, keys, billing and the audit trail",
        validators=[DataRequired(message="Tick the box to confirm.")],
    )
    submit = SubmitField("Make admin")


class ActionForm(Form):
    """Enable, remove admin: nothing to fill in but the CSRF token."""

    submit = SubmitField()


def account_forms() -> dict[str, Form]:
    """The forms the partial renders (the user page's view adds them)."""
    return {
        "disable_form": DisableForm(formdata=None),
        "grant_form": GrantAdminForm(formdata=None),
        "action_form": ActionForm(formdata=None),
    }


def _user(user_id: int) -> User:
    user = db.session.get(User, user_id) if user_id < 2**31 else None
    return user or abort(404)


def _back(user: User) -> ResponseReturnValue:
    return redirect(url_for("admin.user_detail", user_id=user.id))


def _act(user: User, form: Form, action, done: str, unchanged: str) -> ResponseReturnValue:
    if not form.validate_on_submit():
        flash("Tick the confirmation box. Nothing was changed.", "error")
        return _back(user)
    try:
        changed = action()
    except accounts.AccountError as exc:
        db.session.rollback()
        flash(f"{exc} Nothing was changed.", "error")
    else:
        flash(done if changed is not False else unchanged, "success" if changed else "info")
    return _back(user)


def _actor() -> str:
    return f"user:{current_user.id}"


@bp.route("/users/<int:user_id>/disable", methods=["POST"])
def disable_user(user_id: int) -> ResponseReturnValue:
    user = _user(user_id)
    return _act(
        user,
        DisableForm(),
        lambda: (
            accounts.disable_user(db.session, user, actor=_actor(), actor_ip=client_ip())
            if user.disabled_at is None
            else False
        ),
        f"{user.email} is disabled: keys revoked, sessions ended.",
        "The account was already disabled.",
    )


@bp.route("/users/<int:user_id>/enable", methods=["POST"])
def enable_user(user_id: int) -> ResponseReturnValue:
    user = _user(user_id)
    return _act(
        user,
        ActionForm(),
        lambda: accounts.enable_user(db.session, user, actor=_actor(), actor_ip=client_ip()),
        f"{user.email} can log in again. Revoked keys stay revoked.",
        "The account was not disabled.",
    )


@bp.route("/users/<int:user_id>/admin/<any(grant, remove):change>", methods=["POST"])
def set_admin(user_id: int, change: str) -> ResponseReturnValue:
    user = _user(user_id)
    grant = change == "grant"
    return _act(
        user,
        GrantAdminForm() if grant else ActionForm(),
        lambda: accounts.set_admin(db.session, user, grant, actor=_actor(), actor_ip=client_ip()),
        f"{user.email} is {'now an admin' if grant else 'no longer an admin'}.",
        "Nothing to change.",
    )
