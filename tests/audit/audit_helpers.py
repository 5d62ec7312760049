"""Shared helpers for the audit tests: make events, seal, tamper like an attacker
with database access, run the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import text

from app.audit import core, service, trail
from app.audit import log as auditlog
from app.extensions import db

USE_PG = os.environ.get("DATABASE_URL", "").startswith("postgresql")


def add_events(app: Flask, n: int, start: int = 0, **fields: Any) -> None:
    with app.app_context():
        for i in range(start, start + n):
            trail.record(
                db.session,
                fields.get("action", "key.created"),
                actor=fields.get("actor", f"user:{i}"),
                actor_ip=fields.get("actor_ip", "192.0.2.7"),
                target=fields.get("target", f"key:k{i}"),
                details=fields.get("details", {"n": i, "name": "ci ✓"}),
            )
        db.session.commit()


def seal(app: Flask, force: bool = False) -> int:
    with app.app_context():
        return auditlog.seal_all(db.engine, service.settings(app), force_checkpoint=force)


def build_log(app: Flask, batches: tuple[int, ...] = (10, 10)) -> None:
    """Events sealed in batches: one checkpoint per batch (sizes 10, 20 by default)."""
    n = 0
    for size in batches:
        add_events(app, size, start=n)
        n += size
        seal(app)


def tamper(app: Flask, *statements: tuple[str, dict[str, Any]] | str) -> None:
    """Run SQL as someone with full database access (PostgreSQL triggers bypassed, as a
    superuser could)."""
    with app.app_context(), db.engine.begin() as conn:
        if USE_PG:
            conn.execute(text("SET LOCAL session_replication_role = replica"))
        for st in statements:
            sql, params = (st, {}) if isinstance(st, str) else st
            conn.execute(text(sql), params)


def scalar(app: Flask, sql: str, **params: Any) -> Any:
    with app.app_context(), db.engine.connect() as conn:
        return conn.execute(text(sql), params).scalar()


def verify(app: Flask, *args: str):
    return app.test_cli_runner().invoke(args=["audit", "verify", *args])


BLOCKER = """
import importlib.abc, runpy, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("flask", "sqlalchemy", "app", "werkzeug", "flask_sqlalchemy"):
            raise ImportError("blocked for the offline test: " + name)
sys.meta_path.insert(0, Block())
sys.argv = ["offline.py", *sys.argv[1:]]
runpy.run_path(sys.argv.pop(1), run_name="__main__")
"""


_BUNDLE: dict[str, Path] = {}


def bundle_path() -> Path:
    """The single-file verifier `flask audit verifier` builds, alone in a temp dir."""
    if "path" not in _BUNDLE:
        from app.audit.bundle import build_verifier

        folder = Path(tempfile.mkdtemp(prefix="kl-verifier-"))
        path = folder / "keyledger_verify.pyz"
        build_verifier(path)
        _BUNDLE["path"] = path
    return _BUNDLE["path"]


def run_offline(*args: str, script: Path | None = None) -> subprocess.CompletedProcess:
    """Run the standalone verifier with Flask, SQLAlchemy and the app blocked, from
    its own directory (-I: no user site, no PYTHONPATH)."""
    script = script or bundle_path()
    return subprocess.run(
        [sys.executable, "-I", "-c", BLOCKER, str(script), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(script.parent),
    )


def rewind_to(app: Flask, size: int) -> None:
    """Restore-from-an-old-backup: newest events and checkpoints gone, state rewound."""
    with app.app_context(), db.engine.connect() as conn:
        leaves = [
            bytes(r[0])
            for r in conn.execute(
                text("SELECT leaf_hash FROM audit_event WHERE seq < :n ORDER BY seq"), {"n": size}
            )
        ]
    f = core.Frontier()
    for leaf in leaves:
        f.append(leaf)
    tamper(
        app,
        ("DELETE FROM audit_event WHERE seq >= :n", {"n": size}),
        ("DELETE FROM audit_checkpoint WHERE tree_size > :n", {"n": size}),
        (
            "UPDATE audit_state SET size = :n, root = :r, frontier = :f",
            {"n": size, "r": f.root(), "f": f.to_bytes()},
        ),
    )
