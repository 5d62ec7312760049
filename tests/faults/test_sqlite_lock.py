"""A SQLite file write-locked by another process (BEGIN EXCLUSIVE held open): writes
answer 503 within 2 s and change nothing, reads keep working (WAL), the usage writer
keeps its queue, and once the lock is gone everything queued is written."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask_migrate import upgrade
from sqlalchemy import func, select
from support.db import base_config
from support.faults import ANSWER_WITHIN, validate
from support.rows import audit_events, count_rows
from support.servers import timed, wait_until
from support.web import Portal, csrf_token

from app import create_app
from app.extensions import db
from app.models import UsageRecord
from app.usage import recorder

# Starts processes of its own: on the one xdist worker that runs such tests.
pytestmark = [pytest.mark.faults, pytest.mark.xdist_group("servers")]

LOCKER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.read()  # hold the lock until the test closes our stdin
db.execute("ROLLBACK")
"""


@pytest.fixture
def sqlite_app(tmp_path: Path) -> Iterator[Flask]:
    """Its own SQLite file (whatever database the suite runs on), migrated."""
    url = f"sqlite:///{tmp_path / 'locked.db'}"
    app = create_app({**base_config(tmp_path, url), "RATELIMIT_STORAGE_URI": "memory://"})
    with app.app_context():
        upgrade()
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def test_sqlite_locked_by_another_process(sqlite_app: Flask, tmp_path: Path) -> None:
    app = sqlite_app
    portal = Portal(app.test_client())
    assert portal.register("ops@example.com").status_code == 302
    key = portal.create_key("before")[1]
    assert key
    assert [validate(portal.client, key).status_code for _ in range(5)] == [200] * 5
    token = csrf_token(portal.client.get("/keys/new").get_data(as_text=True))
    keys_before = count_rows(app, "api_key")
    rec = recorder(app)

    locker = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(tmp_path / "locked.db")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
        form = {"name": "during", "scopes": ["keys:read"], "lifetime_days": 30}
        resp, seconds = timed(
            lambda: portal.client.post("/keys/new", data={**form, "csrf_token": token})
        )
        print(f"\n  POST /keys/new: {resp.status_code} in {seconds:.2f} s")
        assert resp.status_code == 503, resp.get_data(as_text=True)[:300]
        assert seconds < ANSWER_WITHIN
        assert "Content-Security-Policy" in resp.headers
        # Reads go on (WAL): the keys page and validations, whose usage waits in memory.
        assert portal.client.get("/keys").status_code == 200
        assert validate(portal.client, key).status_code == 200
        _, flush_seconds = timed(rec.flush)
        print(f"  usage flush while locked: gave up in {flush_seconds:.2f} s")
        assert flush_seconds < ANSWER_WITHIN
        assert rec.pending() >= 6
    finally:
        if locker.stdin is not None:
            locker.stdin.close()
        locker.wait(timeout=10)

    recovery = wait_until(lambda: portal.create_key("after")[1] is not None, within=10)
    print(f"  recovery {recovery:.2f} s")
    assert count_rows(app, "api_key") == keys_before + 1  # the refused one never happened
    rec.flush()
    assert rec.pending() == 0
    with app.app_context():
        ok = db.session.scalar(
            select(func.count()).select_from(UsageRecord).where(UsageRecord.status == 200)
        )
    assert ok == 6
    assert len(audit_events(app, "key.created")) == 2
    result = app.test_cli_runner().invoke(args=["audit", "verify"])
    assert result.exit_code == 0, result.output
