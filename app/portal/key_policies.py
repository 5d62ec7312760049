"""The owner's key policies in the portal, and the leaked-key notice at login."""

from __future__ import annotations

import json

from flask import flash, redirect, request, url_for
from flask.blueprints import BlueprintSetupState
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required, user_logged_in

from app.extensions import db
from app.keys import leaks, lifecycle, policies
from app.models import User
from app.portal import bp
from app.portal.routes import _own_key_or_404
from app.web import client_ip

MAX_FIELD = 4096  # characters per textarea: well above 100 ranges or 1 KiB of JSON


@bp.route("/keys/<public_id>/policies", methods=["POST"])
@login_required
def key_policies(public_id: str) -> ResponseReturnValue:
    key = _own_key_or_404(public_id)
    back = redirect(url_for("portal.key_detail", public_id=public_id) + "#policies")
    ranges = request.form.get("ip_allowlist", "")
    meta_text = request.form.get("meta", "").strip()
    try:
        if len(ranges) > MAX_FIELD or len(meta_text) > MAX_FIELD:
            raise lifecycle.KeyRequestError("a field is too long")
        if meta_text:
            try:
                meta = json.loads(meta_text)
            except (ValueError, RecursionError):
                raise lifecycle.KeyRequestError("the metadata is not JSON") from None
        else:
            meta = None
        changed = policies.set_policies(
            db.session,
            key,
            ip_allowlist=ranges.replace(",", " ").split(),  # one a line, or commas
            meta=meta,
            actor=current_user,
            actor_ip=client_ip(),
        )
    except lifecycle.KeyRequestError as exc:
        db.session.rollback()
        flash(f"{exc}. Nothing was changed.", "error")
        return back
    flash("Policies saved." if changed else "Policies unchanged.", "success")
    return back


def _tell_of_leaks(sender: object, user: User, **_: object) -> None:
    """At login, once per leaked key: it was found in public and revoked."""
    keys = leaks.pending_notices(db.session, user.id)
    if not keys:
        return
    for key in keys:
        flash(
            f"Your key “{key.name}” ({key.prefix}.{key.public_id}) was found in public "
            f"({key.leak_location}) and was revoked at once. Create a new key for the "
            "services that used it.",
            "error",
        )
    leaks.mark_notified(db.session, keys)


@bp.record_once
def _listen_for_logins(state: BlueprintSetupState) -> None:
    user_logged_in.connect(_tell_of_leaks, state.app)
