"""`flask usage prune` (and a pointer from the old `flask usage billing`)."""

from __future__ import annotations

import click
from flask import current_app

from app.cli import CommandGroup
from app.extensions import db
from app.usage.retention import prune as prune_usage

usage = CommandGroup("usage", help="Usage records: retention.")


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


@usage.command(
    "billing",
    hidden=True,
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
)
def billing_moved() -> None:
    """Replaced by `flask billing export` (one billing export, priced): a pointer for
    scripts and fingers that still type the old name."""
    raise click.UsageError(
        "`flask usage billing` was replaced by `flask billing export --month YYYY-MM "
        "[--format csv|json|cloudevents]`: the month's requests per user and key, with "
        'the billable count, tier and price (docs/usage.md, "Billing")'
    )
