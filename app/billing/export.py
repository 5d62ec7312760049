"""The billing export in its three formats, for `flask billing export`, /admin/billing
and /billing (one account's CSV): every one is `statement.bill()`, so they agree."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from app.billing import Plans, cloudevents
from app.billing.statement import Bill, bill
from app.csvexport import to_csv

FORMATS = ("csv", "json", "cloudevents")
MIMETYPES = {"csv": "text/csv", "json": "application/json", "cloudevents": "application/x-ndjson"}
EXTENSIONS = {"csv": "csv", "json": "json", "cloudevents": "jsonl"}

# One row per charge ("plan": an account's month at a tier, with the money) and per key
# ("key": its use at a tier, the breakdown of the pool; no money of its own).
COLUMNS = (
    "user_id",
    "email",
    "line",
    "key_id",
    "key_name",
    "tier",
    "days",
    "hours",
    "requests",
    "billable",
    "allowance",
    "overage",
    "base",
    "amount",
    "currency",
)


def render(
    fmt: str, session: Session, plan_set: Plans, month: str, start: datetime, end: datetime
) -> Iterator[str]:
    """The export of [start, end) as text chunks."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    if fmt == "cloudevents":
        for event in cloudevents(session, start, end):
            yield json.dumps(event, separators=(",", ":"), sort_keys=True) + "\n"
        return
    month_bill = bill(session, plan_set, start, end)
    if fmt == "json":
        yield json.dumps(json_body(month_bill, plan_set, month), indent=2, ensure_ascii=False)
        yield "\n"
        return
    yield csv_text(month_bill)


def json_body(month_bill: Bill, plan_set: Plans, month: str) -> dict[str, Any]:
    return {
        "month": month,
        "currency": plan_set.currency,
        "plans": {
            t: {"included": p.included, "base": str(p.base), "per_1000": str(p.per_1000)}
            for t, p in plan_set.by_tier.items()
        },
        "accounts": [
            {
                "user_id": owner,
                "email": email,
                "charges": [c.to_dict() for c in charges],
                "keys": [
                    {
                        "key_id": x.key_id,
                        "key_name": x.key_name,
                        "tier": x.tier,
                        "hours": x.hours,
                        "requests": x.requests,
                        "billable": x.billable,
                    }
                    for x in keys
                ],
                "amount": str(sum(c.amount for c in charges)),
            }
            for owner, email, charges, keys in month_bill.accounts()
        ],
        "totals": month_bill.totals().to_dict(),
    }


def rows(month_bill: Bill) -> Iterator[list[Any]]:
    """COLUMNS rows: each account's charges, then its keys."""
    for owner, email, charges, keys in month_bill.accounts():
        for c in charges:
            yield [
                owner, email, "plan", "", "", c.tier, c.days, "", c.requests, c.billable,
                c.allowance, c.overage, c.base, c.amount, c.currency,
            ]  # fmt: skip
        for x in keys:
            yield [
                owner, email, "key", x.key_id, x.key_name, x.tier, "", x.hours, x.requests,
                x.billable, "", "", "", "", "",
            ]  # fmt: skip


def csv_text(month_bill: Bill) -> str:
    """The bill as CSV (a key name that looks like a formula is quoted as text)."""
    return to_csv(COLUMNS, rows(month_bill))
