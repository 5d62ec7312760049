"""PostgreSQL stalls under load (issue 22), against the README's server whose every database
connection goes through the test's own proxy: three stalls of 3 s while clients
validate without pause. Every validation answered 200 is in usage and its roll-ups
after the flush, exactly (no more, no fewer), and answers during a stall (validation,
/readyz) come within ANSWER_WITHIN."""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import event, func, select
from support.db import USE_PG
from support.faults import ANSWER_WITHIN, validate
from support.keys import Keys
from support.proxy import Proxy
from support.servers import AppServer, wait_until

from app.extensions import db
from app.models import UsageRecord, UsageRollup
from app.usage import recorder

pytestmark = [
    pytest.mark.faults,
    pytest.mark.xdist_group("servers"),
    pytest.mark.skipif(not USE_PG, reason="needs PostgreSQL (DATABASE_URL)"),
]
REDIS = os.environ.get("RATELIMIT_STORAGE_URI", "").startswith("redis://")
UNLIMITED = "basic=100000,premium=100000,enterprise=100000"
STALLS, STALL_SECONDS, BETWEEN = 3, 3.0, 1.0


class _Load:
    """Client threads validating one key without pause, each answer's status and time
    noted, and whether a stall was on when it was asked."""

    def __init__(self, server: AppServer, key: str, threads: int) -> None:
        self.server, self.key = server, key
        self.stalled = threading.Event()
        self.stop = threading.Event()
        self.answers: list[tuple[int | str, float, bool]] = []
        self.ready: list[tuple[int | str, float]] = []
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._validate) for _ in range(threads)]
        self._threads.append(threading.Thread(target=self._readyz))

    def __enter__(self) -> _Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self._threads:
            t.join(30)

    def _validate(self) -> None:
        body = json.dumps({"key": self.key, "request": {"method": "GET", "path": "/v1/stall"}})
        while not self.stop.is_set():
            during = self.stalled.is_set()
            started = time.monotonic()
            try:
                status: int | str = self.server.post(
                    "/api/v1/keys/validate", body.encode(), {"Connection": "close"}
                )[0]
            except (urllib.error.URLError, OSError) as exc:
                status = f"no answer: {exc}"
            with self._lock:
                self.answers.append((status, time.monotonic() - started, during))

    def _readyz(self) -> None:
        while not self.stop.is_set():
            if not self.stalled.wait(0.1):
                continue
            started = time.monotonic()
            try:
                with urllib.request.urlopen(self.server.url + "/readyz", timeout=10) as resp:
                    status: int | str = resp.status
            except urllib.error.HTTPError as err:
                status = err.code
            except (urllib.error.URLError, OSError) as exc:
                status = f"no answer: {exc}"
            self.ready.append((status, time.monotonic() - started))
            time.sleep(0.3)


def _billed_and_rolled(app: Flask, key_id: int) -> tuple[int, int]:
    """The key's 200s as usage records and as minute roll-ups: both must count each once."""
    with app.app_context():
        billed = db.session.scalar(
            select(func.count())
            .select_from(UsageRecord)
            .where(UsageRecord.key_id == key_id, UsageRecord.status == 200)
        )
        rolled = db.session.scalar(
            select(func.coalesce(func.sum(UsageRollup.status_2xx), 0)).where(
                UsageRollup.key_id == key_id, UsageRollup.granularity == "minute"
            )
        )
    return billed, rolled


def test_three_stalls_under_load_bill_every_200_exactly(
    proxied_app: Flask, pg_proxy: Proxy, tmp_path: Path
) -> None:
    app = proxied_app
    key = Keys(app).key(tier="enterprise", name="stalled")
    storage = os.environ["RATELIMIT_STORAGE_URI"] if REDIS else "memory://"
    workers = 2
    server = AppServer(
        app,
        tmp_path,
        workers,
        RATELIMIT_STORAGE_URI=storage,
        TIER_RATE_LIMITS=UNLIMITED,
        USAGE_FLUSH_INTERVAL="0.2",
    )
    with server, _Load(server, key.plaintext, 2) as load:
        for _ in range(STALLS):
            time.sleep(BETWEEN)
            pg_proxy.blackhole()
            load.stalled.set()
            time.sleep(STALL_SECONDS)
            load.stalled.clear()
            pg_proxy.forward()
        time.sleep(BETWEEN)
    # the server has stopped (SIGTERM): each worker flushed what it held on its way out.
    answers = load.answers
    statuses = [a[0] for a in answers]
    ok = statuses.count(200)
    billed, rolled = _billed_and_rolled(app, key.id)
    during = [a for a in answers if a[2]]
    slowest = max(seconds for _, seconds, _ in during)
    slowest_ready = max(seconds for _, seconds in load.ready)
    print(
        f"\n{len(answers)} validations, {ok} answered 200, {len(during)} during the stalls "
        f"({sum(1 for a in during if a[0] == 200)} of them 200); other answers: "
        f"{ {s: statuses.count(s) for s in set(statuses) if s != 200} }; billed {billed}, "
        f"rolled up {rolled}; slowest validation during a stall {slowest:.2f} s, slowest "
        f"/readyz {slowest_ready:.2f} s ({len(load.ready)} asked)"
    )
    assert ok > 0 and during
    assert billed == ok, (billed, ok)
    assert rolled == ok, (rolled, ok)
    assert set(statuses) <= {200, 503}, statuses  # no 500, no dropped connection
    assert slowest < ANSWER_WITHIN, slowest
    assert load.ready and slowest_ready < ANSWER_WITHIN, load.ready


def test_a_flush_whose_commit_went_unanswered_is_written_once(
    proxied_app: Flask, pg_proxy: Proxy
) -> None:
    """The stalls' double billing, staged exactly: the flush's COMMIT reaches PostgreSQL,
    which carries it out, and its answer is lost (the proxy's mute mode). The batch is
    kept and retried; the retry must find it written, not write it again."""
    app = proxied_app
    key = Keys(app).key(name="muted")
    client = app.test_client()
    answers = [validate(client, key.plaintext).status_code for _ in range(3)]
    assert answers == [200] * 3
    rec = recorder(app)
    with app.app_context():
        engine = db.engine
    fired: list[bool] = []

    def mute(*args: object) -> None:
        if not fired:
            fired.append(True)
            pg_proxy.mute()

    event.listen(engine, "commit", mute)
    try:
        rec.flush()  # committed by the server, unanswered: kept for a retry
    finally:
        event.remove(engine, "commit", mute)
    assert fired and rec.pending() > 0
    pg_proxy.forward()
    validate(client, key.plaintext)  # one more, queued behind the retried batch
    wait_until(lambda: (rec.flush(), rec.pending() == 0)[1], within=10)
    billed, rolled = _billed_and_rolled(app, key.id)
    assert (billed, rolled) == (4, 4)
