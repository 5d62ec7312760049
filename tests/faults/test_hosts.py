"""The README's server on PostgreSQL: a worker SIGKILLed in the middle of a burst of key
creations and validations, and two app hosts (two server instances with their own
ports and instance folders, one PostgreSQL, one Redis)."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.error
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select, text
from support.db import USE_PG
from support.faults import ANSWER_WITHIN, through
from support.keys import ALL_SCOPES, Keys
from support.rows import audit_events
from support.servers import ROOT, AppServer, children, wait_until

from app.extensions import db
from app.models import ApiKey, UsageRecord

pytestmark = [
    pytest.mark.faults,
    pytest.mark.skipif(not USE_PG, reason="needs PostgreSQL (DATABASE_URL)"),
]
REDIS = os.environ.get("RATELIMIT_STORAGE_URI", "").startswith("redis://")
VALIDATE = "/api/v1/keys/validate"
UNLIMITED = "basic=100000,premium=100000,enterprise=100000"


def _call(server: AppServer, path: str, body: dict[str, Any], key: str | None = None) -> Any:
    """(status, json) or ("dropped", None) when the connection died with its worker."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        status, _, raw = server.post(path, json.dumps(body).encode(), headers)
    except (urllib.error.URLError, ConnectionError, OSError):
        return "dropped", None
    return status, json.loads(raw or b"null")


def _verify(app: Flask) -> None:
    result = app.test_cli_runner().invoke(args=["audit", "verify"])
    assert result.exit_code == 0, result.output


def _keys_and_their_events(app: Flask) -> tuple[set[str], set[str]]:
    with app.app_context():
        rows = set(db.session.scalars(select(ApiKey.public_id)).all())
    created = {e.target.removeprefix("key:") for e in audit_events(app, "key.created")}
    return rows, created


def _usage_200s(app: Flask, key_id: int) -> int:
    with app.app_context():
        return db.session.scalar(
            select(func.count())
            .select_from(UsageRecord)
            .where(UsageRecord.key_id == key_id, UsageRecord.status == 200)
        )


def _signed_to_the_end(app: Flask) -> bool:
    with app.app_context():
        unsealed, sealed = db.session.execute(
            text("SELECT count(*) - count(seq), count(seq) FROM audit_event")
        ).one()
        signed = db.session.scalar(text("SELECT max(tree_size) FROM audit_checkpoint"))
    return not unsealed and signed == sealed


def test_sigkill_of_a_worker_mid_burst(app: Flask, tmp_path: Path) -> None:
    """Mid-burst, the audit table is locked for a moment (as a slow sealer or a vacuum
    might), so that the workers stop inside key-creating transactions, and one worker is
    SIGKILLed there: its transaction must vanish whole."""
    keys = Keys(app)
    admin = keys.key(tier="enterprise", scopes=ALL_SCOPES, name="burst")
    server = AppServer(
        app, tmp_path, 2, TIER_RATE_LIMITS=UNLIMITED, USAGE_FLUSH_INTERVAL="0.2"
    ).__enter__()
    killed: list[int] = []
    done = 0
    lock = threading.Lock()

    def kill_inside_a_transaction() -> None:
        with app.app_context(), db.engine.connect() as conn:
            conn.execute(text("LOCK TABLE audit_event IN EXCLUSIVE MODE"))
            time.sleep(0.4)  # both workers now wait inside a creation's transaction
            victim = children(server.proc.pid)[0]
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)
            time.sleep(0.1)
            conn.rollback()

    killer = threading.Thread(target=kill_inside_a_transaction)

    def one(i: int) -> Any:
        nonlocal done
        if i % 2:
            out = _call(server, VALIDATE, {"key": admin.plaintext})
        else:
            body = {"name": f"burst-{i}", "scopes": ["keys:read"], "lifetime_days": 7}
            out = _call(server, "/api/v1/keys", body, admin.plaintext)
        with lock:
            done += 1
            if done == 60:
                killer.start()
        return i, out

    try:
        with ThreadPoolExecutor(8) as pool:
            outcomes = list(pool.map(one, range(240)))
        killer.join()
        assert len(killed) == 1
        assert killed[0] not in children(server.proc.pid)  # the server replaced it
    finally:
        server.__exit__(None, None, None)

    statuses = [out[0] for _, out in outcomes]
    created = {out[1]["key_id"] for i, out in outcomes if i % 2 == 0 and out[0] == 201}
    print(
        f"\n[sigkill] {statuses.count(201)} created, {statuses.count(200)} validated, "
        f"{statuses.count('dropped')} dropped with the worker, others {set(statuses)}"
    )
    assert set(statuses) <= {200, 201, "dropped"}, statuses
    assert 1 <= statuses.count("dropped") <= 8  # the killed worker's request, no more
    # No half-created key, and no key without its audit event (or the reverse).
    rows, events = _keys_and_their_events(app)
    assert rows == events
    assert created <= rows  # every key whose secret was handed out exists
    assert len(rows) == 1 + len(created)  # the one killed mid-creation never happened
    _verify(app)


@pytest.mark.skipif(not REDIS, reason="needs Redis (RATELIMIT_STORAGE_URI)")
def test_two_app_hosts_share_limits_revocations_and_one_audit_log(
    app: Flask, tmp_path: Path
) -> None:
    keys = Keys(app)
    limited = keys.key(name="limited")  # basic: 60 a minute, across both hosts
    admin = keys.key(tier="enterprise", scopes=ALL_SCOPES, name="admin", email="ops@example.com")
    shared = {
        "RATELIMIT_KEY_PREFIX": f"hosts-{secrets.token_hex(6)}",
        "AUDIT_SEAL_INTERVAL": "0.3",
        "AUDIT_CHECKPOINT_INTERVAL": "1",
    }
    # Hosts join a log that has signed: each host's operator starts its anchor from the
    # newest checkpoint (an empty anchor on a signed log halts the sealer, issue 17).
    assert app.test_cli_runner().invoke(args=["audit", "checkpoint"]).exit_code == 0
    hosts = []
    try:
        for name in ("a", "b"):
            instance = tmp_path / f"host-{name}"
            host = AppServer(app, tmp_path, 2, KEYLEDGER_INSTANCE=str(instance), **shared)
            flask = str(Path(sys.executable).parent / "flask")
            started = subprocess.run(
                [flask, "--app", "app", "audit", "recover", "--new-anchor"],
                cwd=ROOT, env=host.env, capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            assert started.returncode == 0, started.stderr + started.stdout
            hosts.append(host.__enter__())
        a, b = hosts
        body = {"key": limited.plaintext}
        with ThreadPoolExecutor(16) as pool:
            codes = list(pool.map(lambda i: _call(hosts[i % 2], VALIDATE, body)[0], range(100)))
        assert codes.count(200) == 60, codes
        assert codes.count(429) == 40

        # A revocation on host a is effective on host b within 1 s.
        victim = keys.key(name="victim", email="ops@example.com")
        assert _call(b, VALIDATE, {"key": victim.plaintext})[0] == 200  # cached on b
        status, _ = _call(a, f"/api/v1/keys/{victim.public_id}/revoke", {}, admin.plaintext)
        assert status == 200
        revoked_at = time.monotonic()
        answers = []
        while time.monotonic() - revoked_at < 1.0:
            answers.append(_call(b, VALIDATE, {"key": victim.plaintext}))
        assert answers[0][0] == 401 and answers[0][1]["error"] == "revoked", answers[0]
        assert {(s, j["error"]) for s, j in answers} == {(401, "revoked")}

        # Both hosts write (and seal) into one log: more creations on each.
        for i in range(6):
            body = {"name": f"host-{i}", "scopes": ["keys:read"], "lifetime_days": 7}
            assert _call(hosts[i % 2], "/api/v1/keys", body, admin.plaintext)[0] == 201
        # Sealed and signed: every event has its seq and the newest checkpoint covers it.
        wait_until(lambda: _signed_to_the_end(app), within=60)
    finally:
        for server in hosts:
            server.__exit__(None, None, None)

    rows, events = _keys_and_their_events(app)
    assert rows == events
    _verify(app)
    # No fork: each host's anchor (the checkpoints it signed) agrees with the one log.
    from app.audit import service
    from app.audit.verify import verify_log

    anchors = [tmp_path / f"host-{n}" / "audit_anchor.jsonl" for n in ("a", "b")]
    for anchor in anchors:
        assert anchor.exists() and anchor.read_text().strip(), anchor
        with app.app_context():
            report = verify_log(db.engine, service.settings(app), anchor_path=anchor, workers=0)
        assert report.ok, (anchor, report.damage)


def test_server_with_the_database_black_holed(app: Flask, tmp_path: Path, pg_proxy: Any) -> None:
    """The issue's report, end to end: the workers on a database that stops
    answering answer 503 within 2 s (not a 30 s hang and a killed worker), their flush
    threads keep what they queued, and after recovery and a stop every answered
    validation is in usage."""
    keys = Keys(app)
    key = keys.key(tier="enterprise", name="blackhole")
    server = AppServer(
        app,
        tmp_path,
        2,
        DATABASE_URL=through(app.config["SQLALCHEMY_DATABASE_URI"], pg_proxy.port),
        RATELIMIT_STORAGE_URI="memory://",  # one budget per worker: fine for this test
        USAGE_FLUSH_INTERVAL="1.5",  # so that the outage finds events still queued
    ).__enter__()
    body = {"key": key.plaintext, "request": {"method": "GET", "path": "/v1/hole"}}
    answered_ok = 0
    try:
        for _ in range(10):
            assert _call(server, VALIDATE, body)[0] == 200
            answered_ok += 1
        pg_proxy.blackhole()
        time.sleep(0.6)  # past the key cache's TTL: validations need the database now
        slowest = 0.0
        for _ in range(6):
            started = time.monotonic()
            status, answer = _call(server, VALIDATE, body)
            seconds = time.monotonic() - started
            slowest = max(slowest, seconds)
            assert status == 503 and answer["error"] == "unavailable", (status, answer)
            assert seconds < ANSWER_WITHIN, seconds
        pg_proxy.forward()

        def ok() -> bool:
            nonlocal answered_ok
            if _call(server, VALIDATE, body)[0] == 200:
                answered_ok += 1
                return True
            return False

        recovery = wait_until(ok, within=10)
        # The flush threads, not the stop, write what waited through the outage.
        wait_until(lambda: _usage_200s(app, key.id) == answered_ok, within=30)
    finally:
        server.__exit__(None, None, None)
    print(f"\n[server blackhole] slowest 503 {slowest:.2f} s, recovery {recovery:.2f} s")
    log = server.output()
    assert "WORKER TIMEOUT" not in log
    assert "database unavailable, keeping" in log  # the flush threads met the outage
    assert "could not be written" not in log
    assert _usage_200s(app, key.id) == answered_ok
