"""The billing export in its three formats, for `flask billing export` and /admin/billing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime

from sqlalchemy.orm import Session

from app.billing import COLUMNS, Line, Plans, cloudevents, lines, totals
from app.csvexport import to_csv

FORMATS = ("csv", "json", "cloudevents")
MIMETYPES = {"csv": "text/csv", "json": "application/json", "cloudevents": "application/x-ndjson"}
EXTENSIONS = {"csv": "csv", "json": "json", "cloudevents": "jsonl"}


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
    priced = lines(session, plan_set, start, end)
    if fmt == "json":
        body = {
            "month": month,
            "currency": plan_set.currency,
            "plans": {
                t: {"included": p.included, "base": str(p.base), "per_1000": str(p.per_1000)}
                for t, p in plan_set.by_tier.items()
            },
            "lines": [x.to_dict() for x in priced],
            "totals": totals(priced, plan_set.currency).to_dict(),
        }
        yield json.dumps(body, indent=2, ensure_ascii=False) + "\n"
        return
    yield csv_text(priced)


def csv_text(priced: list[Line]) -> str:
    """The lines as CSV (a key name that looks like a formula is quoted as text)."""
    return to_csv(COLUMNS, ([x.to_dict()[c] for c in COLUMNS] for x in priced))
