"""Models and migrations agree: `flask db upgrade` builds exactly what the models declare."""

from __future__ import annotations

import os

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from support.db import USE_PG, base_config

from app import create_app
from app.extensions import db


def _differences(app) -> list:
    with app.app_context(), db.engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={"compare_type": True, "render_as_batch": True},
        )
        return compare_metadata(context, db.metadata)


@pytest.mark.skipif(USE_PG, reason="SQLite run: upgrades a brand-new SQLite file")
def test_flask_db_upgrade_on_an_empty_sqlite_file_matches_the_models(tmp_path):
    path = tmp_path / "empty.db"
    app = create_app(base_config(tmp_path, f"sqlite:///{path}"))
    try:
        result = app.test_cli_runner().invoke(args=["db", "upgrade"])
        assert result.exit_code == 0, result.output
        with app.app_context():
            tables = set(inspect(db.engine).get_table_names())
        assert {"user", "api_key", "audit_event", "alembic_version"} <= tables
        assert _differences(app) == []
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def test_migrated_test_database_matches_the_models(app):
    """The fixture database (SQLite template, or PostgreSQL from a dropped schema) was
    built by the same migrations; on PostgreSQL this is the empty-database check."""
    assert _differences(app) == []


def test_the_comparison_would_notice_a_drift(app):
    """Guard against a check that cannot fail: a column the migrations never made."""
    from sqlalchemy import Column, Integer, MetaData, Table

    extra = MetaData()
    for table in db.metadata.tables.values():
        table.to_metadata(extra)
    Table("api_key", extra, Column("surprise", Integer), extend_existing=True)
    with app.app_context(), db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, extra)
    assert any(d[0] == "add_column" and d[3].name == "surprise" for d in diff)


def test_migrations_have_one_head():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    config = Config()
    config.set_main_option("script_location", os.path.join(root, "migrations"))
    assert len(ScriptDirectory.from_config(config).get_heads()) == 1
