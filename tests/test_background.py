"""app/background.py: the one periodic thread the usage flush, webhook delivery and
the metrics sampler run on. Waits are on events with generous bounds, never on sleeps."""

from __future__ import annotations

import os
import threading

import pytest

from app.background import Worker

WAIT = 10.0  # an upper bound for a loaded machine; a passing run returns at once


def counting_worker(**kwargs: object) -> tuple[Worker, list[int], threading.Event]:
    calls: list[int] = []
    called = threading.Event()

    def step() -> None:
        calls.append(os.getpid())
        called.set()

    return Worker("test-worker", step, 3600, **kwargs), calls, called


def test_nothing_runs_until_asked_and_a_disabled_worker_never_starts() -> None:
    worker, calls, _ = counting_worker(enabled=False)
    assert not worker.running
    assert worker.ensure_running() is False
    assert not worker.running and calls == []


def test_first_pass_at_once_then_on_wake_and_stop_joins() -> None:
    worker, calls, called = counting_worker()
    assert worker.ensure_running()
    try:
        assert called.wait(WAIT)
        assert worker.ensure_running()  # already running: no second thread
        called.clear()
        worker.wake()  # the interval is an hour: only the wake can run this pass
        assert called.wait(WAIT)
        assert len(calls) == 2
    finally:
        worker.stop()
    assert not worker.running


def test_wait_first_runs_its_first_pass_only_when_woken() -> None:
    worker, calls, called = counting_worker(wait_first=True)
    worker.ensure_running()
    try:
        assert not called.wait(0.2)
        worker.wake()
        assert called.wait(WAIT)
    finally:
        worker.stop()
    assert len(calls) == 1


def test_a_failed_pass_is_logged_and_the_next_one_runs(caplog: pytest.LogCaptureFixture) -> None:
    passes: list[int] = []
    second = threading.Event()

    def step() -> None:
        passes.append(1)
        if len(passes) == 1:
            raise RuntimeError("database away")
        second.set()

    worker = Worker("flaky", step, 3600)
    worker.ensure_running()
    try:
        worker.wake()
        assert second.wait(WAIT)
    finally:
        worker.stop()
    assert "flaky: a pass failed" in caplog.text
    assert "database away" in caplog.text


def test_stop_then_start_again() -> None:
    worker, calls, called = counting_worker()
    worker.ensure_running()
    assert called.wait(WAIT)
    worker.stop()
    called.clear()
    worker.ensure_running()
    try:
        assert called.wait(WAIT)
    finally:
        worker.stop()
    assert len(calls) == 2


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_starts_its_own_thread() -> None:
    """The child inherits the object but not the thread (gunicorn's workers)."""
    worker, calls, called = counting_worker()
    worker.ensure_running()
    assert called.wait(WAIT)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report whether its own thread ran, and leave at once
        ok = False
        try:
            called.clear()  # copied from the parent in its set state
            ok = not worker.running and worker.ensure_running() and called.wait(WAIT)
            ok = ok and worker.running and calls[-1] == os.getpid()
        finally:
            os.write(write, b"1" if ok else b"0")
            os._exit(0)
    os.close(write)
    try:
        called.clear()
        answer = os.read(read, 1)
        os.waitpid(pid, 0)
    finally:
        os.close(read)
        worker.stop()
    assert answer == b"1"
