"""Per-app wiring: importing the package binds nothing; create_app does, step by step.

Each check runs in a fresh interpreter, since this test process has built apps already.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# A fresh interpreter on a SQLite file of its own: nothing here reads the run's database.
pytestmark = pytest.mark.any_database

PROBE = """
import gc, importlib, json, pkgutil, sys
import app
for info in pkgutil.walk_packages(app.__path__, "app."):
    if not info.name.endswith(".__main__"):  # a script's entry point runs on import
        importlib.import_module(info.name)
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from app import _sqlite_pragmas
from app.keys import cache
from app.usage import batch, recorder
from flask_limiter import Limiter

def session_hooks():
    return [event.contains(Session, name, hook) for name, hook in cache._SESSION_HOOKS]

seen = {"imported": {
    "session_hooks": session_hooks(),
    "engine_pragmas": event.contains(Engine, "connect", _sqlite_pragmas),
    "process_hooks": batch._hooks_installed,
    "recorder_is_the_accessor": callable(recorder) and recorder.__module__ == "app.usage",
    "limiters": sum(isinstance(o, Limiter) for o in gc.get_objects()),
}}
built = app.create_app({
    "TESTING": True,
    "SQLALCHEMY_DATABASE_URI": "sqlite:///" + sys.argv[1],
    "INSTANCE_PATH": sys.argv[2],
    "SECRET_KEY": "probe",
    "KEY_PEPPER": "probe",
    "RATELIMIT_STORAGE_URI": "memory://",
})
from app.extensions import db
with built.app_context():
    engine_pragmas = event.contains(db.engine, "connect", _sqlite_pragmas)
    with db.engine.connect() as conn:
        foreign_keys = conn.exec_driver_sql("PRAGMA foreign_keys").scalar()
seen["created"] = {
    "session_hooks": session_hooks(),
    "engine_pragmas": engine_pragmas,
    "foreign_keys": foreign_keys,
    "process_hooks": batch._hooks_installed,
    "services": sorted(k for k in built.extensions if k.startswith("keyledger.")),
}
app.create_app({**built.config, "SQLALCHEMY_DATABASE_URI": "sqlite:///" + sys.argv[1] + "2"})
listening = Session()
seen["twice"] = [
    sum(1 for fn in getattr(listening.dispatch, name) if fn is hook)
    for name, hook in cache._SESSION_HOOKS
]
print(json.dumps(seen))
"""


def probe(tmp_path: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path / "probe.db"), str(tmp_path / "instance")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_import_binds_nothing_and_create_app_binds_each_hook_once(tmp_path: Path) -> None:
    seen = probe(tmp_path)
    assert seen["imported"] == {
        "session_hooks": [False, False, False],
        "engine_pragmas": False,
        "process_hooks": False,
        "recorder_is_the_accessor": True,
        "limiters": 0,  # each app makes its own (app/limiter.py)
    }
    created = seen["created"]
    assert created["session_hooks"] == [True, True, True]
    assert created["engine_pragmas"] is True
    assert created["foreign_keys"] == 1
    assert created["process_hooks"] is True
    for service in ("key_cache", "usage", "webhooks", "passwords", "metrics", "limiter"):
        assert f"keyledger.{service}" in created["services"]
    # A second app in the same process adds no second copy of the session hooks.
    assert seen["twice"] == [1, 1, 1]
