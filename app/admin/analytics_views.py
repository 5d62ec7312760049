"""Admin overview (/admin), security monitoring, chart data and billing downloads.

Thin views over app.admin.analytics and app.billing; access control is the admin
blueprint's before_request (admins only; anyone else gets 403 and an audit event).
"""

from __future__ import annotations

from flask import Response, abort, jsonify, render_template, request, stream_with_context, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user

from app.admin import analytics, bp
from app.audit import trail
from app.billing import cloudevents_count, plans
from app.billing.export import EXTENSIONS, FORMATS, MIMETYPES, render
from app.billing.statement import bill
from app.csvexport import csv_response
from app.extensions import db
from app.models._types import utcnow
from app.times import month_of, month_range, recent_months
from app.usage import recorder
from app.web import client_ip

BILLING_PAGE_LINES = 100


def _window() -> analytics.Window:
    raw = request.args.get("days", "30").strip()
    days = int(raw) if raw.isdigit() else 0
    if days not in analytics.WINDOWS:
        abort(400, description=f"days must be one of {', '.join(map(str, analytics.WINDOWS))}.")
    return analytics.Window.last(days, utcnow())


def _audit_link(**filters: str) -> str:
    return url_for("admin.audit", **filters)


@bp.route("/")
def overview() -> ResponseReturnValue:
    window = _window()
    return render_template(
        "admin/overview.html",
        window=window,
        windows=analytics.WINDOWS,
        totals=analytics.totals(db.session, window),
        charts=analytics.OVERVIEW_CHARTS,
    )


@bp.route("/security")
def security() -> ResponseReturnValue:
    window = _window()
    return render_template(
        "admin/security.html",
        window=window,
        windows=analytics.WINDOWS,
        figures=analytics.security_figures(db.session, window, _audit_link),
        changes=analytics.recent_key_changes(db.session),
        charts=analytics.SECURITY_CHARTS,
    )


def _chart() -> analytics.Chart:
    name = request.view_args["name"] if request.view_args else ""
    if name not in analytics.OVERVIEW_CHARTS + analytics.SECURITY_CHARTS:
        abort(404)
    return analytics.chart(db.session, name, _window(), _audit_link)


@bp.route("/charts/<name>.json")
def chart_json(name: str) -> ResponseReturnValue:
    return jsonify(_chart().to_dict())


@bp.route("/charts/<name>.csv")
def chart_csv(name: str) -> ResponseReturnValue:
    chart = _chart()
    head, *rows = chart.rows()
    return csv_response(f"{chart.name}.csv", head, rows)


def _month() -> tuple[str, object, object]:
    month = request.args.get("month", "").strip() or month_of(utcnow())
    try:
        start, end = month_range(month)
    except ValueError as exc:
        abort(400, description=str(exc))
    return month, start, end


@bp.route("/billing")
def billing() -> ResponseReturnValue:
    month, start, end = _month()
    plan_set = plans()
    month_bill = bill(db.session, plan_set, start, end)  # type: ignore[arg-type]
    # The largest amounts on the page; every charge and key line is in the downloads.
    shown = sorted(month_bill.charges, key=lambda x: (-x.amount, -x.billable, x.email, x.tier))
    keys: dict[int, set[str]] = {}
    for x in month_bill.lines:
        keys.setdefault(x.owner_id, set()).add(x.key_id)
    return render_template(
        "admin/billing.html",
        month=month,
        months=recent_months(utcnow(), 12),
        charges=shown[:BILLING_PAGE_LINES],
        all_charges=len(shown),
        keys=keys,
        total=month_bill.totals(),
        plans=plan_set,
        formats=FORMATS,
    )


@bp.route("/billing/export.<fmt>")
def billing_export(fmt: str) -> ResponseReturnValue:
    if fmt not in FORMATS:
        abort(404)
    month, start, end = _month()
    recorder().flush()
    trail.record(
        db.session,
        "billing.exported",
        actor=f"user:{current_user.id}",
        actor_ip=client_ip(),
        target="billing",
        details={"month": month, "format": fmt},
    )
    db.session.commit()
    name = f"keyledger-billing-{month}.{EXTENSIONS[fmt]}"
    headers = {
        "Content-Disposition": f'attachment; filename="{name}"',
        "Cache-Control": "no-store",
    }
    if fmt == "cloudevents":
        # One line an event: the page counts lines against this to show its progress.
        headers["X-Export-Events"] = str(cloudevents_count(db.session, start, end))  # type: ignore[arg-type]
    body = render(fmt, db.session, plans(), month, start, end)  # type: ignore[arg-type]
    return Response(stream_with_context(body), mimetype=MIMETYPES[fmt], headers=headers)
