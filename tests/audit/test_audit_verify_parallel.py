"""Verify with worker processes (what big logs get) must reach the same verdict as the
one-process check: the same root for an intact log, the same first damage otherwise."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading

import pytest
from audit_helpers import build_log, tamper

from app.audit import service
from app.audit.core.parallel import start_method, usable_cores
from app.audit.verify import PARALLEL_MIN, auto_workers, verify_log
from app.extensions import db

# What verify logs when it leaves the ranged check for the one-process one.
FALLBACK = "rechecking in seq order"
FAILED = "audit verify by ranges failed"


def both(app, caplog):
    """(one-process report, two-worker report) on tiny chunks, so several are in flight."""
    with app.app_context():
        settings = service.settings(app)
        single = verify_log(db.engine, settings, workers=0)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="app.audit.verify"):
            parallel = verify_log(db.engine, settings, workers=2, chunk=3)
    return single, parallel


def test_intact_log_same_root_without_falling_back(app, caplog):
    build_log(app, (10, 7, 13))
    single, parallel = both(app, caplog)
    assert single.ok and parallel.ok, (single.summary(), parallel.summary())
    assert (parallel.events, parallel.checkpoints, parallel.root) == (30, 3, single.root)
    assert FALLBACK not in caplog.text
    assert FAILED not in caplog.text


@pytest.mark.parametrize(
    ("sql", "kind", "seq"),
    [
        ("UPDATE audit_event SET actor = 'user:999' WHERE seq = 7", "field_changed", 7),
        ("DELETE FROM audit_event WHERE seq = 11", "event_missing", 11),
        (
            ("UPDATE audit_event SET leaf_hash = :h WHERE seq = 25", {"h": bytes(32)}),
            "bytes_changed",
            25,
        ),
    ],
)
def test_damage_named_as_in_one_process(app, caplog, sql, kind, seq):
    build_log(app, (10, 7, 13))
    tamper(app, sql)
    single, parallel = both(app, caplog)
    # A gap in the seqs goes straight to the seq-ordered check; other damage is found
    # by a worker's range first, and the seq-ordered check names it.
    assert (FALLBACK in caplog.text) == (kind != "event_missing")
    assert not parallel.ok
    assert parallel.damage is not None and single.damage is not None
    assert (parallel.damage.kind, parallel.damage.seq) == (kind, seq)
    assert parallel.summary() == single.summary()


def test_automatic_workers_one_per_core_on_big_logs_whatever_threads_run():
    cores = usable_cores()
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    for alive in (False, True):
        if alive:  # another thread in this process changes nothing (a fork server starts them)
            thread.start()
        try:
            assert auto_workers(PARALLEL_MIN - 1) == 0
            assert auto_workers(PARALLEL_MIN) == (cores if cores >= 2 else 0)
            assert start_method() in ("forkserver", "spawn")
        finally:
            stop.set()
    thread.join()


@pytest.mark.timeout(120)
def test_a_worker_that_dies_is_an_error_and_the_check_ends_in_one_process(app, caplog):
    """Workers killed while their ranges are in flight: the ranged check fails with
    WorkerLost (multiprocessing.Pool waited for the lost ranges for ever) and verify
    names the same verdict from the seq-ordered check."""
    build_log(app, (10, 7, 13))
    killed: list[int] = []

    def kill_the_workers(done: int, total: int) -> None:
        if killed:
            return
        for child in multiprocessing.active_children():
            os.kill(child.pid, signal.SIGKILL)
            killed.append(child.pid)

    with app.app_context():
        settings = service.settings(app)
        single = verify_log(db.engine, settings, workers=0)
        with caplog.at_level(logging.INFO, logger="app.audit.verify"):
            parallel = verify_log(
                db.engine, settings, workers=2, chunk=3, progress=kill_the_workers
            )
    assert killed, "no worker process was running"
    assert FAILED in caplog.text and "WorkerLost" in caplog.text, caplog.text
    assert single.ok and parallel.ok, (single.summary(), parallel.summary())
    assert (parallel.events, parallel.checkpoints, parallel.root) == (30, 3, single.root)
    assert (parallel.notes, parallel.warnings) == (single.notes, single.warnings)
