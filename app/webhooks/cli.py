"""`flask webhooks run`: the dispatcher as a process of its own (or one pass)."""

from __future__ import annotations

import contextlib

import click

from app.cli import CommandGroup
from app.webhooks.service import dispatcher

webhooks = CommandGroup("webhooks", help="Send queued webhook deliveries.")


@webhooks.command("run")
@click.option("--once", is_flag=True, help="One pass (scan and deliver), then exit.")
def run(once: bool) -> None:
    """Scan for key events and deliver what is due, every WEBHOOK_INTERVAL seconds."""
    service = dispatcher()
    if once:
        queued, attempts = service.run_once()
        click.echo(f"queued {queued} message(s), made {attempts} delivery attempt(s)")
        return
    click.echo(f"delivering webhooks every {service.settings.interval:g} s; Ctrl-C stops")
    with contextlib.suppress(KeyboardInterrupt):
        service.loop()
