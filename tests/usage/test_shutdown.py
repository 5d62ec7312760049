"""A real gunicorn gets requests, then SIGTERM: every request is in the database after.

The flush interval is set to an hour, so nothing is written by the timer: what reaches
the database got there through the shutdown path (gunicorn.conf.py's worker_exit hook
and atexit). The server uses the test's own database (SQLite file or PostgreSQL).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import func, select
from support.rows import audit_events, count_rows
from support.servers import PATIENCE, free_port
from support.usage import Key

from app.extensions import db
from app.keys import format as keyformat
from app.models import ApiKey, UsageRollup

# Starts gunicorn: on the one xdist worker that runs such tests.
pytestmark = pytest.mark.xdist_group("servers")

ROOT = Path(__file__).resolve().parents[2]


def start_gunicorn(
    app: Flask, tmp: Path, workers: int, threads: int
) -> tuple[subprocess.Popen, str, Path]:
    port = free_port()
    conf = app.config
    env = {
        **os.environ,
        "KEYLEDGER_ENV": "development",
        "KEYLEDGER_INSTANCE": conf["INSTANCE_PATH"],
        "DATABASE_URL": conf["SQLALCHEMY_DATABASE_URI"],
        "SECRET_KEY": conf["SECRET_KEY"],
        "KEY_PEPPER": conf["KEY_PEPPER"],
        "AUDIT_SIGNING_KEY": conf["AUDIT_SIGNING_KEY"],
        "RATELIMIT_STORAGE_URI": "memory://",
        "RATELIMIT_ALLOW_PER_WORKER": "1",  # limits are not what this test is about
        "TIER_RATE_LIMITS": "basic=100000,premium=100000,enterprise=100000",
        "USAGE_FLUSH_INTERVAL": "3600",
        "USAGE_MODE": "thread",
        "PYTHONUNBUFFERED": "1",
    }
    log = tmp / "gunicorn.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "gunicorn"),
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(workers),
                "--threads",
                str(threads),
                "--graceful-timeout",
                "20",
                "app:create_app()",
            ],
            cwd=ROOT,  # gunicorn reads ./gunicorn.conf.py from here
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"gunicorn exited:\n{log.read_text()}")
        try:
            urllib.request.urlopen(url + "/login", timeout=1).close()
            return proc, url, log
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"gunicorn did not start:\n{log.read_text()}")


def post_validate(url: str, key: str) -> int:
    req = urllib.request.Request(
        url + "/api/v1/keys/validate",
        data=json.dumps(
            {"key": key, "request": {"method": "GET", "path": "/v1/shutdown"}}
        ).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code


def test_sigterm_flushes_every_request_of_every_worker(
    app: Flask, key: Key, tmp_path: Path
) -> None:
    proc, url, log = start_gunicorn(app, tmp_path, workers=2, threads=4)
    try:
        n, bad = 120, 10
        forged = keyformat.assemble("klk", keyformat.new_public_id(), keyformat.new_secret())
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda _: post_validate(url, key.plaintext), range(n)))
            failed = list(pool.map(lambda _: post_validate(url, forged), range(bad)))
        assert statuses == [200] * n, log.read_text()
        assert failed == [401] * bad, log.read_text()
        # Nothing flushed yet: the interval is an hour (so the test proves the shutdown path).
        assert count_rows(app, "usage_event") == 0

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    output = log.read_text()
    assert count_rows(app, "usage_event") == n, output
    with app.app_context():
        counted = db.session.scalar(
            select(func.sum(UsageRollup.count)).where(
                UsageRollup.key_id == key.id, UsageRollup.granularity == "minute"
            )
        )
        assert counted == n
        assert db.session.get(ApiKey, key.id).last_used_at is not None
    # Every failure is audited; successes once per key, client IP and minute per worker.
    assert len(audit_events(app, "key.validation_failed")) == bad
    assert 1 <= len(audit_events(app, "key.validated", target=f"key:{key.public_id}")) <= 4
    assert "could not be written" not in output
