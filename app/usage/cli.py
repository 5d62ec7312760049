"""`flask usage prune` and `flask usage billing`."""

from __future__ import annotations

import csv
import sys
from datetime import UTC, datetime

import click
from flask import current_app
from flask.cli import AppGroup

from app.extensions import db
from app.usage import recorder
from app.usage.queries import billing as billing_lines
from app.usage.retention import prune as prune_usage

usage = AppGroup("usage", help="Usage records: retention and billing.")


@usage.command("prune")
@click.option(
    "--days",
    type=click.IntRange(min=1),
    default=None,
    help="Keep raw events this many days (default USAGE_RETENTION_DAYS, 30).",
)
@click.option(
    "--minute-days",
    type=click.IntRange(min=1),
    default=None,
    help="Keep minute roll-ups this many days (default USAGE_MINUTE_RETENTION_DAYS, 90).",
)
@click.option("--dry-run", is_flag=True, help="Count what would go; delete nothing.")
def prune(days: int | None, minute_days: int | None, dry_run: bool) -> None:
    """Delete raw usage events past retention; hour roll-ups (billing) are kept."""
    days = days or int(current_app.config.get("USAGE_RETENTION_DAYS", 30))
    minute_days = minute_days or int(current_app.config.get("USAGE_MINUTE_RETENTION_DAYS", 90))
    try:
        result = prune_usage(
            db.session, retention_days=days, minute_retention_days=minute_days, dry_run=dry_run
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    verb = "would delete" if dry_run else "deleted"
    click.echo(
        f"{verb} {result.events} raw usage events older than "
        f"{result.events_cutoff:%Y-%m-%d %H:%M} UTC ({days} days) and "
        f"{result.minute_rollups} minute roll-ups older than {minute_days} days; "
        "hour roll-ups kept"
    )


def _month(value: str) -> tuple[datetime, datetime]:
    try:
        start = datetime.strptime(value, "%Y-%m").replace(tzinfo=UTC)
    except ValueError as exc:
        raise click.BadParameter("use YYYY-MM, e.g. 2026-11") from exc
    end = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )
    return start, end


@usage.command("billing")
@click.argument("month")
def billing(month: str) -> None:
    """Requests per owner and key in MONTH (YYYY-MM, UTC), as CSV, from hour roll-ups."""
    start, end = _month(month)
    recorder().flush()
    out = csv.writer(sys.stdout)
    out.writerow(["owner_id", "key_id", "requests", "errors_5xx"])
    for line in billing_lines(db.session, start, end):
        out.writerow([line.owner_id, line.key_id, line.requests, line.errors_5xx])
