"""/billing: the logged-in account's use against its plan, this month and past ones.

Thin: app.billing.statement prices the months; this reads the request and renders.
"""

from __future__ import annotations

from flask import abort, render_template, request
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required

from app.billing import plans
from app.billing.export import COLUMNS, rows
from app.billing.statement import bill, project
from app.csvexport import csv_response
from app.extensions import db
from app.models._types import utcnow
from app.portal import bp
from app.times import month_of, month_range, recent_months

PAST_MONTHS = 6


@bp.route("/billing")
@login_required
def billing() -> ResponseReturnValue:
    now = utcnow()
    plan_set = plans()
    projection, current = project(db.session, plan_set, current_user, now)
    first = month_of(current_user.created_at)  # no months before the account existed
    past = []
    for month in recent_months(now, PAST_MONTHS + 1)[1:]:
        if month < first:
            break
        start, end = month_range(month)
        month_bill = bill(db.session, plan_set, start, end, owner_id=current_user.id, now=now)
        past.append((month, month_bill.totals(), len(month_bill.lines)))
    return render_template(
        "portal/billing.html",
        projection=projection,
        bill=current,
        total=current.totals(),
        plan=plan_set[current_user.tier],
        plans=plan_set,
        past=past,
    )


@bp.route("/billing/export.csv")
@login_required
def billing_export() -> ResponseReturnValue:
    """The account's own bill for ?month= (default this month), as CSV: the export's
    rows for this account."""
    month = request.args.get("month", "").strip() or month_of(utcnow())
    try:
        start, end = month_range(month)
    except ValueError as exc:
        abort(400, description=str(exc))
    month_bill = bill(db.session, plans(), start, end, owner_id=current_user.id)
    return csv_response(f"keyledger-billing-{month}.csv", COLUMNS, rows(month_bill))
