"""`flask billing export --month YYYY-MM [--format csv|json|cloudevents]`."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from app.billing import month_range, plans
from app.billing.export import FORMATS, render
from app.extensions import db
from app.usage import recorder

billing = AppGroup("billing", help="Billing by plan: exports per user and key.")


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
    for chunk in render(fmt, db.session, plans(), month, start, end):
        click.echo(chunk, nl=False)
