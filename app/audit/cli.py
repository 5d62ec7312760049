"""`flask audit ...`."""

from __future__ import annotations

import sys

import click
from flask.cli import AppGroup

from app.audit import trail
from app.extensions import db

audit = AppGroup("audit", help="Inspect and verify the audit trail.")


@audit.command("verify")
def audit_verify() -> None:
    """Recompute the chain; exit 1 naming the first bad event."""
    result = trail.verify(db.session)
    if not result.ok:
        click.echo(result.summary(), err=True)
        sys.exit(1)
    click.echo(result.summary())
