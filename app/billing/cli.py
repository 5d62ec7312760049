"""`flask billing export --month YYYY-MM [--format csv|json|cloudevents]` and
`flask billing close [--through YYYY-MM-DD]`."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from app.billing import cloudevents_count, plans, snapshot
from app.billing.export import FORMATS, render
from app.cli import CommandGroup, progress
from app.extensions import db
from app.times import month_range
from app.usage import recorder

billing = CommandGroup("billing", help="Billing by plan: exports per user and key, day snapshots.")


@billing.command("export")
@click.option("--month", required=True, help="UTC month, YYYY-MM (e.g. 2026-11).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="csv", show_default=True)
def export(month: str, fmt: str) -> None:
    """Priced lines per user, key and tier (csv, json), or one CloudEvent per key and
    hour (cloudevents, JSON lines), to stdout."""
    try:
        start, end = month_range(month)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--month") from exc
    recorder().flush()
    chunks = render(fmt, db.session, plans(), month, start, end)
    if fmt != "cloudevents":
        for chunk in chunks:
            click.echo(chunk, nl=False)
        return
    # One line an event, and a month of them takes a while: progress on stderr, so a
    # redirected stdout stays the events alone.
    total = cloudevents_count(db.session, start, end)
    with progress(chunks, "Events", total, err=True) as lines:
        for line in lines:
            click.echo(line, nl=False)


@billing.command("close")
@click.option(
    "--through",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Last UTC day to snapshot, YYYY-MM-DD (default: every closed day).",
)
def close(through: datetime | None) -> None:
    """Write the billing snapshot of every closed day that has none (run it from cron
    shortly after midnight UTC, past the grace period); days written before are kept."""
    now = datetime.now(UTC)
    last = through.replace(tzinfo=UTC) if through is not None else None
    closed, covered = snapshot.close_all(db.engine, now=now, through=last)
    if covered is None:
        click.echo("no closed day with usage to snapshot")
        return
    click.echo(
        f"snapshotted {closed.days} days ({closed.rows} rows) through {covered:%Y-%m-%d}; "
        f"days close {snapshot.GRACE.total_seconds() / 60:.0f} minutes after midnight UTC"
    )
