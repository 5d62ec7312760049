"""Many processes append while the sealer runs: every event ends up with a unique,
contiguous sequence number and the log verifies."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from audit_helpers import USE_PG
from flask_migrate import upgrade
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from app import create_app
from app.audit import log as auditlog
from app.audit import service
from app.audit.verify import verify_log
from app.extensions import db

# Starts writer processes: on the one xdist worker that runs such tests; each writer may
# take 240 s on a loaded machine (pytest-timeout: pyproject).
pytestmark = [pytest.mark.xdist_group("servers"), pytest.mark.timeout(600)]

WORKER = Path(__file__).with_name("append_worker.py")


def _run(app, url: str, instance: Path, processes: int, per_process: int) -> None:
    stop = threading.Event()
    seals = []

    def sealer() -> None:
        with app.app_context():
            while not stop.is_set():
                try:
                    seals.append(auditlog.seal(db.engine, service.settings()).sealed)
                except OperationalError:
                    # SQLite's busy timeout ran out under the writers: the app's sealer
                    # logs this and tries again next tick; so does this one.
                    seals.append(0)
                time.sleep(0.05)

    thread = threading.Thread(target=sealer)
    thread.start()
    try:
        procs = [
            subprocess.Popen(
                [sys.executable, str(WORKER), url, str(instance), str(per_process), f"w{i}"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(processes)
        ]
        for p in procs:
            _out, err = p.communicate(timeout=240)
            assert p.returncode == 0, err
    finally:
        stop.set()
        thread.join()
    total = processes * per_process
    # The sealer really ran while appends were happening, in several batches.
    assert sum(seals) > 0 and len([s for s in seals if s]) > 1
    with app.app_context():
        auditlog.seal_all(db.engine, service.settings(), force_checkpoint=True)
        with db.engine.connect() as conn:
            seqs = conn.execute(text("SELECT seq FROM audit_event ORDER BY seq")).scalars().all()
            per_worker = dict(
                conn.execute(text("SELECT actor, count(*) FROM audit_event GROUP BY actor")).all()
            )
        assert seqs == list(range(total))
        assert per_worker == {f"key:w{i}": per_process for i in range(processes)}
        settings = service.settings()
        report = verify_log(db.engine, settings, anchor_path=settings.anchor.path)
        assert report.ok, report.summary()
        assert report.events == total


@pytest.mark.skipif(not USE_PG, reason="PostgreSQL run only (DATABASE_URL=postgresql...)")
def test_postgres_8_processes_append_1000_each_while_sealing(app, tmp_path):
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    _run(app, url, tmp_path / "workers", processes=8, per_process=1000)


def test_sqlite_4_processes_append_1000_each_while_sealing(tmp_path):
    """On its own SQLite file, so it runs in the PostgreSQL suite too."""
    url = f"sqlite:///{tmp_path / 'concurrent.db'}"
    app = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": url,
            "INSTANCE_PATH": str(tmp_path / "instance"),
            "SECRET_KEY": "t",
            "KEY_PEPPER": "t",
        }
    )
    with app.app_context():
        upgrade()
        # Several writer processes on one SQLite file: WAL, as docs/audit.md advises, so
        # the sealer's reads never block a writer's commit.
        with db.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")
        db.engine.dispose()
    try:
        _run(app, url, tmp_path / "workers", processes=4, per_process=1000)
    finally:
        with app.app_context():
            db.engine.dispose()
