"""The user's usage views: /dashboard, the key page's analytics, their JSON and CSV.

Thin: read the request, ask app.usage.analytics, answer. A key that is not the user's
gets the same 404 as a key that does not exist (and the attempt is audited).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import current_app, jsonify, render_template, request
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required

from app.api.errors import api_error
from app.csvexport import csv_response
from app.extensions import db
from app.models import ApiKey
from app.portal import bp
from app.portal import routes as portal_routes
from app.ratelimit import Limit, effective_limit
from app.usage import analytics
from app.usage.queries import UsageQueryError
from app.web import key_policy


def _window() -> analytics.Window:
    args = request.args
    return analytics.window(args.get("range"), args.get("from"), args.get("to"), datetime.now(UTC))


def _bad(exc: Exception) -> ResponseReturnValue:
    return api_error(400, message=str(exc))


def _json(payload: dict[str, Any]) -> ResponseReturnValue:
    response = jsonify({**payload, "tables": analytics.tables(payload)})
    response.headers["Cache-Control"] = "private, no-store"
    return response


def _limit(key: ApiKey) -> Limit:
    return effective_limit(key.tier, key.rate_limit, current_app.config, key.owner_rate_limit)


def _own_key_ids() -> list[int]:
    return list(db.session.scalars(db.select(ApiKey.id).where(ApiKey.user_id == current_user.id)))


def _dashboard_payload() -> dict[str, Any]:
    return analytics.dashboard_usage(db.session, _own_key_ids(), _window())


@bp.route("/dashboard")
@login_required
def dashboard() -> ResponseReturnValue:
    now = datetime.now(UTC)
    keys = analytics.user_keys(db.session, current_user.id)
    return render_template(
        "portal/dashboard.html",
        keys=keys,
        expiring=analytics.expiring_keys(keys, now, key_policy().expiring_days),
        unused=analytics.unused_keys(keys, now),
        failures=analytics.recent_failures(db.session, keys),
        expiring_days=key_policy().expiring_days,
        unused_days=analytics.UNUSED_DAYS,
        outcome_labels=analytics.OUTCOME_LABELS,
    )


@bp.route("/dashboard/usage.json")
@login_required
def dashboard_usage() -> ResponseReturnValue:
    """Requests over time across the user's keys, by outcome, and the top keys."""
    try:
        return _json(_dashboard_payload())
    except UsageQueryError as exc:
        return _bad(exc)


@bp.route("/dashboard/usage.csv")
@login_required
def dashboard_usage_csv() -> ResponseReturnValue:
    chart = request.args.get("chart", "series")
    try:
        header, rows = analytics.table(_dashboard_payload(), chart)
    except UsageQueryError as exc:
        return _bad(exc)
    return csv_response(f"keyledger-dashboard-{chart}.csv", header, rows)


def _key_payload(key: ApiKey) -> dict[str, Any]:
    limit = _limit(key)
    payload = analytics.key_usage(db.session, key.id, _window(), limit.per_minute, limit.describe())
    return {"key_id": key.public_id, **payload}


@bp.route("/keys/<public_id>/usage.json")
@login_required
def key_usage(public_id: str) -> ResponseReturnValue:
    """The key page's charts: the owner's only (anyone else: 404, audited)."""
    key = portal_routes._own_key_or_404(public_id)
    try:
        return _json(_key_payload(key))
    except UsageQueryError as exc:
        return _bad(exc)


@bp.route("/keys/<public_id>/usage.csv")
@login_required
def key_usage_csv(public_id: str) -> ResponseReturnValue:
    key = portal_routes._own_key_or_404(public_id)
    chart = request.args.get("chart", "series")
    try:
        header, rows = analytics.table(_key_payload(key), chart)
    except UsageQueryError as exc:
        return _bad(exc)
    return csv_response(f"keyledger-{key.public_id}-{chart}.csv", header, rows)


def key_page_usage(key: ApiKey) -> dict[str, Any]:
    """Template values of the key page's usage partial: the request log page asked for."""
    error = None
    status_text = request.args.get("log_status", "")
    before_text = request.args.get("log_before", "")
    try:
        status = analytics.parse_status_filter(status_text)
        if before_text and not (
            before_text.isascii() and before_text.isdigit() and len(before_text) <= 18
        ):
            raise UsageQueryError("that page of the request log does not exist")
        before = int(before_text) if before_text else None
    except UsageQueryError as exc:
        error, status, before, status_text = str(exc), None, None, ""
    page = analytics.request_log(db.session, key.id, status, before)
    return {
        "usage_log": page,
        "usage_log_status": status_text,
        "usage_log_error": error,
        "usage_log_paged": before is not None,
        "usage_limit": _limit(key),
    }
