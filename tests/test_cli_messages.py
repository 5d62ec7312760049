"""The command line says what went wrong and what to do, without a traceback: a database
that was never migrated (or is behind), a --public-key that is not a key, an empty
KEYLEDGER_INSTANCE, and the old `flask usage billing` name (issue 18)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask import Flask
from flask.cli import FlaskGroup
from flask_migrate import upgrade
from sqlalchemy import create_engine, text
from support.db import PG_URL, USE_PG, base_config

from app import create_app
from app.audit import core
from app.config import PROJECT_ROOT
from app.extensions import db

UPGRADE_HINT = "run `flask db upgrade` (or `make serve` once)"


@pytest.fixture
def bare_url(tmp_path: Path) -> Iterator[str]:
    """A database with no tables: a new SQLite file, or a new empty PostgreSQL schema."""
    if not USE_PG:
        yield f"sqlite:///{tmp_path / 'never-migrated.db'}"
        return
    schema = f"bare_{uuid.uuid4().hex[:12]}"
    engine = create_engine(PG_URL)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


def _app(tmp_path: Path, url: str) -> Flask:
    return create_app(base_config(tmp_path, url))


@pytest.mark.parametrize(
    "args",
    [
        ["users", "list"],
        ["users", "create", "first@example.com"],
        ["billing", "close"],
        ["audit", "verify"],
        ["usage", "prune"],
    ],
)
def test_a_never_migrated_database_says_to_run_the_migrations(tmp_path, bare_url, args):
    app = _app(tmp_path, bare_url)
    result = app.test_cli_runner().invoke(args=args, input="correct horse battery staple\n")
    assert result.exit_code == 1
    assert "was never migrated" in result.output
    assert UPGRADE_HINT in result.output
    assert "Traceback" not in result.output and "sqlalchemy" not in result.output.lower()
    with app.app_context():
        assert db.inspect(db.engine).get_table_names() == []  # nothing was created
        db.engine.dispose()


def test_a_database_behind_this_code_names_both_revisions(tmp_path, bare_url):
    app = _app(tmp_path, bare_url)
    with app.app_context():
        from alembic.script import ScriptDirectory

        script = ScriptDirectory.from_config(app.extensions["migrate"].migrate.get_config())
        (head,) = script.get_heads()
        (first,) = script.get_bases()  # the first schema: later columns are missing
        upgrade(revision=first)
        db.engine.dispose()
    result = app.test_cli_runner().invoke(args=["users", "list"])
    assert result.exit_code == 1
    assert f"is at revision {first}, this version needs {head}" in result.output
    assert UPGRADE_HINT in result.output


def test_a_migrated_database_runs_the_command(app, runner):
    """The check only speaks after a database error: a migrated database is untouched."""
    result = runner.invoke(args=["users", "list"])
    assert result.exit_code == 0, result.output
    assert "migrated" not in result.output


# --------------------------------------------------------------------------- --public-key


@pytest.fixture
def signed_log(app, runner, tmp_path) -> tuple[Path, Path]:
    """A checkpoint, its export and the log's public key."""
    assert runner.invoke(args=["audit", "checkpoint"]).exit_code == 0
    export = tmp_path / "log.jsonl"
    result = runner.invoke(args=["audit", "export"])
    assert result.exit_code == 0, result.output
    export.write_text(result.output)
    key = tmp_path / "log.pem"
    key.write_text(runner.invoke(args=["audit", "public-key"]).output)
    return export, key


@pytest.mark.parametrize("content", [b"hello, not a key\n", b"\x89PNG\r\n\x1a\n\x00\xff", b""])
@pytest.mark.parametrize("target", ["database", "export"])
def test_a_public_key_file_that_is_not_a_key_is_refused(
    runner, signed_log, tmp_path, content, target
):
    export, _ = signed_log
    bogus = tmp_path / "bogus.pem"
    bogus.write_bytes(content)
    args = ["audit", "verify", "--public-key", str(bogus)]
    if target == "export":
        args += ["--export", str(export)]
    result = runner.invoke(args=args)
    assert result.exit_code == 1
    assert f"{bogus} is not a public key" in result.output
    assert "flask audit public-key" in result.output
    assert "intact" not in result.output  # refused before any verification


def test_a_missing_public_key_file_is_refused_on_the_database_too(runner, signed_log, tmp_path):
    result = runner.invoke(args=["audit", "verify", "--public-key", str(tmp_path / "nope.pem")])
    assert result.exit_code == 1
    assert "cannot read public key" in result.output


def test_the_database_log_is_checked_against_the_key_given(runner, signed_log, tmp_path):
    _, key = signed_log
    ok = runner.invoke(args=["audit", "verify", "--public-key", str(key)])
    assert ok.exit_code == 0, ok.output
    assert "is signed by the key given" in ok.output

    stranger = tmp_path / "stranger.pem"
    stranger.write_text(core.public_key_pem(Ed25519PrivateKey.generate().public_key()))
    refused = runner.invoke(args=["audit", "verify", "--public-key", str(stranger)])
    assert refused.exit_code == 1
    assert "not signed by the key given" in refused.output
    assert "unknown key" in refused.output


# --------------------------------------------------------------------------- KEYLEDGER_INSTANCE


@pytest.mark.parametrize("value", ["", "   ", str(PROJECT_ROOT), f"{PROJECT_ROOT}/."])
def test_keyledger_instance_empty_or_the_project_root_is_refused(tmp_path, monkeypatch, value):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    before = sorted(PROJECT_ROOT.iterdir())
    cli = FlaskGroup(create_app=create_app)
    result = CliRunner().invoke(cli, ["users", "list"], env={"KEYLEDGER_INSTANCE": value})
    assert result.exit_code != 0
    assert "KEYLEDGER_INSTANCE" in result.output
    assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []  # no secret or database in the working directory
    assert sorted(PROJECT_ROOT.iterdir()) == before


def test_keyledger_instance_naming_a_folder_puts_the_secrets_there(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    for name in ("SECRET_KEY", "KEY_PEPPER", "AUDIT_SIGNING_KEY"):
        monkeypatch.delenv(name, raising=False)
    folder = tmp_path / "kl-b"
    cli = FlaskGroup(create_app=create_app)
    result = CliRunner().invoke(cli, ["users", "--help"], env={"KEYLEDGER_INSTANCE": str(folder)})
    assert result.exit_code == 0, result.output
    assert {p.name for p in folder.iterdir()} >= {"secret_key", "key_pepper"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kl-b"]


# --------------------------------------------------------------------------- one billing command


def test_usage_billing_points_to_billing_export(runner):
    result = runner.invoke(args=["usage", "billing", "2026-11"])
    assert result.exit_code == 2
    assert "flask billing export --month YYYY-MM" in result.output
    assert "owner_id" not in result.output  # no CSV
    listed = runner.invoke(args=["usage", "--help"]).output.split("Commands:")[1]
    assert [line.split()[0] for line in listed.strip().splitlines()] == ["prune"]
