"""The database waits a serving process allows (app/deadlines.py), read back from the
database itself, and the `flask` CLI's exemption from them."""

from __future__ import annotations

import click
from flask import Flask
from sqlalchemy import text
from support.db import USE_PG

from app.extensions import db

SETTING = "SHOW statement_timeout" if USE_PG else "PRAGMA busy_timeout"


def _read(app: Flask) -> str:
    with app.app_context():
        value = str(db.session.execute(text(SETTING)).scalar_one())
        db.session.remove()
        db.engine.dispose()  # the next reader opens its own connection
    return value


def test_serving_waits_are_bounded_and_the_cli_is_exempt(app: Flask) -> None:
    # Serving (a request, a flush thread): a little under DATABASE_TIMEOUT (1.2 s) on
    # PostgreSQL, where the client's own deadline is the real bound; SQLite's lock wait.
    assert _read(app) == ("1080ms" if USE_PG else "1200")

    @app.cli.command("show-wait")
    def show_wait() -> None:
        click.echo(_read(app))

    result = app.test_cli_runner().invoke(args=["show-wait"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == ("0" if USE_PG else "60000")
