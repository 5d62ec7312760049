"""The owner's key policies in the portal, and the leaked-key notice at login."""

from __future__ import annotations

import json

from flask import current_app, flash, redirect, request, url_for
from flask.blueprints import BlueprintSetupState
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required, user_logged_in

from app import ratelimit
from app.extensions import db
from app.keys import leaks, lifecycle, policies
from app.models import User
from app.portal import bp
from app.portal.routes import _own_key_or_404, key_page
from app.web import client_ip

MAX_FIELD = 4096  # characters per textarea: well above 100 ranges or 1 KiB of JSON


@bp.route("/keys/<public_id>/policies", methods=["POST"])
@login_required
def key_policies(public_id: str) -> ResponseReturnValue:
    key = _own_key_or_404(public_id)
    typed = {
        "ip_allowlist": request.form.get("ip_allowlist", ""),
        "meta": request.form.get("meta", ""),
        "rate_limit": request.form.get("rate_limit", "").strip()[:20],
    }
    ranges, range_errors = _ranges(typed["ip_allowlist"])
    meta, meta_errors = _meta(typed["meta"].strip())
    tier_per_minute = ratelimit.tier_rate(key.tier, current_app.config)
    limit_errors = _limit(typed["rate_limit"], tier_per_minute, key.tier)
    if range_errors or meta_errors or limit_errors:
        # The page again, with what was typed and every problem beside its field: a
        # redirect would lose both and land the message far above the form.
        db.session.rollback()
        errors = {"ip_allowlist": range_errors, "meta": meta_errors, "rate_limit": limit_errors}
        return key_page(key, policy_values=typed, policy_errors=errors), 400
    try:
        limited = policies.set_owner_rate_limit(
            db.session,
            key,
            typed["rate_limit"],
            tier_per_minute=tier_per_minute,
            actor=current_user,
            actor_ip=client_ip(),
        )
        changed = limited | policies.set_policies(
            db.session,
            key,
            ip_allowlist=ranges,
            meta=meta,
            actor=current_user,
            actor_ip=client_ip(),
        )
    except lifecycle.KeyRequestError as exc:  # checked above; kept as the domain's last word
        db.session.rollback()
        flash(f"{exc}. Nothing was changed.", "error")
    else:
        flash("Policies saved." if changed else "Policies unchanged.", "success")
    return redirect(url_for("portal.key_detail", public_id=public_id) + "#policies")


def _limit(text: str, tier_per_minute: int, tier: str) -> list[str]:
    """The problem with a typed own rate limit, told by the domain's check."""
    try:
        policies.clean_owner_rate_limit(text, tier_per_minute, tier)
    except lifecycle.KeyRequestError as exc:
        return [_sentence(str(exc))]
    return []


def _ranges(text: str) -> tuple[list[str], list[str]]:
    """The ranges typed (one a line, or commas) and a problem per bad one, each told by
    the domain's own check."""
    if len(text) > MAX_FIELD:
        return [], [f"At most {MAX_FIELD} characters."]
    ranges = text.replace(",", " ").split()
    try:
        policies.clean_allowlist(ranges)
    except lifecycle.KeyRequestError as whole:
        problems = []
        for one in ranges:
            try:
                policies.clean_allowlist([one])
            except lifecycle.KeyRequestError as exc:
                problems.append(_sentence(str(exc)))
        return ranges, problems or [_sentence(str(whole))]
    return ranges, []


def _meta(text: str) -> tuple[object, list[str]]:
    if len(text) > MAX_FIELD:
        return None, [f"At most {MAX_FIELD} characters."]
    if not text:
        return None, []
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, [f"Not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})."]
    except (ValueError, RecursionError):
        return None, ["Not JSON."]
    try:
        policies.clean_meta(meta)
    except lifecycle.KeyRequestError as exc:
        return meta, [_sentence(str(exc))]
    return meta, []


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


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
