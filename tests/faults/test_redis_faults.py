"""Redis (the limit storage) paused and killed: a private redis-server the test starts on
a port of its own. The API fails closed within 2 s (503), login and registration answer a
clear 503 (the throttle fails closed: docs/decisions.md), pages that need no Redis keep
working, a key made during the outage works after it, and nothing queued is lost."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.exceptions
from flask import Flask
from sqlalchemy import func, select
from support.db import base_config, fresh_db
from support.faults import ANSWER_WITHIN, validate
from support.rows import audit_events
from support.servers import PrivateRedis, timed, wait_until
from support.web import PASSWORD, Portal, csrf_token

from app import create_app
from app.extensions import db
from app.models import UsageRecord
from app.usage import recorder

pytestmark = pytest.mark.faults


@pytest.fixture
def redis_app(migrated_db: str, tmp_path: Path, private_redis: PrivateRedis) -> Iterator[Flask]:
    config = base_config(tmp_path, fresh_db(migrated_db, tmp_path))
    app = create_app({**config, "RATELIMIT_STORAGE_URI": private_redis.uri})
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def _outage(app: Flask, portal: Portal, key: str) -> tuple[float, str]:
    """Every route once while Redis does not answer; returns the slowest answer and the
    key created meanwhile."""
    login, register = app.test_client(), app.test_client()
    login_token = csrf_token(login.get("/login").get_data(as_text=True))
    register_token = csrf_token(register.get("/register").get_data(as_text=True))
    slowest = 0.0

    def check(name: str, call, expect: int) -> object:
        nonlocal slowest
        resp, seconds = timed(call)
        print(f"  {name}: {resp.status_code} in {seconds:.2f} s")
        assert seconds < ANSWER_WITHIN, f"{name} took {seconds:.2f} s"
        assert resp.status_code == expect, (name, resp.get_data(as_text=True)[:300])
        slowest = max(slowest, seconds)
        return resp

    resp = check("POST /api/v1/keys/validate", lambda: validate(app.test_client(), key), 503)
    assert resp.get_json()["error"] == "unavailable"
    for name, client, data in (
        ("POST /login", login, {"email": "ops@example.com", "password": PASSWORD}),
        ("POST /register", register, {"email": "new@example.com", "password": PASSWORD}),
    ):
        data = {**data, "confirm": PASSWORD}
        token = login_token if client is login else register_token
        resp = check(
            name,
            lambda c=client, p=name[5:], d=data, t=token: c.post(p, data={**d, "csrf_token": t}),
            503,
        )
        page = resp.get_data(as_text=True)
        assert "Temporarily unavailable" in page
        assert "Content-Security-Policy" in resp.headers
    check("GET /keys (signed in)", lambda: portal.client.get("/keys"), 200)
    made, seconds = timed(lambda: portal.create_key("during the outage"))
    assert seconds < 2 * ANSWER_WITHIN  # two requests: the form, then its POST
    assert made[1], made[0].get_data(as_text=True)[:300]
    return slowest, made[1]


def _cycle(app: Flask, server: PrivateRedis, fault: str) -> None:
    portal = Portal(app.test_client())
    assert portal.register("ops@example.com").status_code == 302
    key = portal.create_key("before")[1]
    assert key
    assert [validate(portal.client, key).status_code for _ in range(5)] == [200] * 5

    control = server.client()
    if fault == "pause":
        # Long enough for the checks below; UNPAUSE ends it sooner where Redis lets the
        # pausing connection through.
        control.execute_command("CLIENT", "PAUSE", "5000", "ALL")
    else:
        server.kill()
    slowest, during = _outage(app, portal, key)

    if fault == "pause":
        with contextlib.suppress(redis.exceptions.TimeoutError):
            control.execute_command("CLIENT", "UNPAUSE")
    else:
        server.start()
    recovery = wait_until(lambda: validate(portal.client, key).status_code == 200, within=10)
    assert validate(portal.client, during).status_code == 200  # made while Redis was away
    assert Portal(app.test_client()).login("ops@example.com").status_code == 302

    rec = recorder(app)
    rec.flush()
    assert rec.pending() == 0
    with app.app_context():
        ok = db.session.scalar(
            select(func.count()).select_from(UsageRecord).where(UsageRecord.status == 200)
        )
    assert ok == 5 + 1 + 1  # before, first after recovery, the key made meanwhile
    assert len(audit_events(app, "key.created")) == 2
    assert audit_events(app, "key.validated")
    result = app.test_cli_runner().invoke(args=["audit", "verify"])
    assert result.exit_code == 0, result.output
    print(f"\n[redis {fault}] slowest answer {slowest:.2f} s, recovery {recovery:.2f} s")


def test_redis_paused(redis_app: Flask, private_redis: PrivateRedis) -> None:
    _cycle(redis_app, private_redis, "pause")


def test_redis_killed(redis_app: Flask, private_redis: PrivateRedis) -> None:
    _cycle(redis_app, private_redis, "kill")
