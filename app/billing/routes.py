"""/billing: the logged-in account's use against its plan, this month and past ones."""

from __future__ import annotations

from flask import Blueprint, abort, render_template, request
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required

from app.billing import COLUMNS, lines, month_range, plans, project, recent_months, totals
from app.csvexport import csv_response
from app.extensions import db
from app.models._types import utcnow

bp = Blueprint("billing", __name__, template_folder=None)

PAST_MONTHS = 6


@bp.route("/billing")
@login_required
def index() -> ResponseReturnValue:
    now = utcnow()
    plan_set = plans()
    projection, current = project(db.session, plan_set, current_user, now)
    past = []
    for month in recent_months(now, PAST_MONTHS + 1)[1:]:
        start, end = month_range(month)
        month_lines = lines(db.session, plan_set, start, end, owner_id=current_user.id)
        past.append((month, totals(month_lines, plan_set.currency), len(month_lines)))
    return render_template(
        "billing/index.html",
        projection=projection,
        lines=current,
        total=totals(current, plan_set.currency),
        plan=plan_set[current_user.tier],
        plans=plan_set,
        past=past,
    )


@bp.route("/billing/export.csv")
@login_required
def export_csv() -> ResponseReturnValue:
    """The account's own priced lines for ?month= (default this month), as CSV."""
    month = request.args.get("month", "").strip() or utcnow().strftime("%Y-%m")
    try:
        start, end = month_range(month)
    except ValueError as exc:
        abort(400, description=str(exc))
    plan_set = plans()
    priced = lines(db.session, plan_set, start, end, owner_id=current_user.id)
    rows = ([x.to_dict()[c] for c in COLUMNS] for x in priced)
    return csv_response(f"keyledger-billing-{month}.csv", COLUMNS, rows)
