"""Several workers flushing into the same roll-up rows at once lose no counts."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import func, select
from support.rows import count_rows
from support.servers import PATIENCE
from support.usage import Key

from app.extensions import db
from app.models import UsageLatencyBin, UsageRollup
from app.usage import UsageEvent, recorder
from app.usage.batch import BatchRecorder

ROOT = Path(__file__).resolve().parents[2]
AT = datetime(2026, 11, 25, 12, 30, 15, tzinfo=UTC)


def totals(app: Flask, key_id: int, granularity: str) -> tuple[int, int, int, int]:
    with app.app_context():
        count, s2, s5 = db.session.execute(
            select(
                func.sum(UsageRollup.count),
                func.sum(UsageRollup.status_2xx),
                func.sum(UsageRollup.status_5xx),
            ).where(UsageRollup.key_id == key_id, UsageRollup.granularity == granularity)
        ).one()
        binned = db.session.scalar(
            select(func.sum(UsageLatencyBin.count)).where(
                UsageLatencyBin.key_id == key_id, UsageLatencyBin.granularity == granularity
            )
        )
        return int(count or 0), int(s2 or 0), int(s5 or 0), int(binned or 0)


@pytest.mark.concurrent_writers
def test_recorders_in_many_threads_flushing_together_lose_nothing(app: Flask, key: Key) -> None:
    workers, per_worker = 6, 300
    recorders = [BatchRecorder(app, mode="manual", batch_max=40) for _ in range(workers)]
    for rec in recorders:
        for i in range(per_worker):
            rec.record(key.event(at=AT, status=200 if i % 3 else 500, ms=float(i % 40)))
            if i % 25 == 0:
                rec.audit("key.validated", actor=f"key:{key.public_id}", actor_ip="198.51.100.9")
    barrier = threading.Barrier(workers)
    errors: list[BaseException] = []

    def run(rec: BatchRecorder) -> None:
        try:
            barrier.wait()
            rec.flush()
            assert rec.pending() == 0
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(r,)) for r in recorders]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
        assert not t.is_alive(), "a flush did not finish"
    assert not errors, errors

    n = workers * per_worker
    assert count_rows(app, "usage_event") == n
    assert totals(app, key.id, "minute") == (n, n - workers * 100, workers * 100, n)
    assert totals(app, key.id, "hour") == (n, n - workers * 100, workers * 100, n)
    from support.rows import audit_events

    assert len(audit_events(app, "key.validated")) == workers * 12


@pytest.mark.xdist_group("servers")  # starts worker processes
def test_worker_processes_flushing_together_lose_nothing(
    app: Flask, key: Key, tmp_path: Path
) -> None:
    procs, per_proc, batch = 4, 400, 50
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    running = [
        subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).with_name("flush_worker.py")),
                url,
                app.instance_path,
                str(key.id),
                str(key.owner_id),
                str(per_proc),
                str(batch),
                str(go),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(procs)
    ]
    for p in running:  # all queued and ready: let them flush at once
        assert p.stdout is not None
        assert p.stdout.readline().strip() == "ready", p.stderr.read() if p.stderr else ""
    go.touch()
    for p in running:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert out.strip() == str(per_proc)
    n = procs * per_proc
    assert count_rows(app, "usage_event") == n
    count, ok, failed, binned = totals(app, key.id, "minute")
    assert (count, ok, failed, binned) == (n, n // 4, n // 4, n)
    assert totals(app, key.id, "hour")[0] == n


def test_thread_mode_writes_without_being_asked(app: Flask, key: Key) -> None:
    rec = BatchRecorder(app, mode="thread", interval=0.05)
    try:
        for _ in range(50):
            rec.record(key.event())
        deadline = time.monotonic() + PATIENCE
        while count_rows(app, "usage_event") < 50 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert count_rows(app, "usage_event") == 50
    finally:
        rec.shutdown()


def test_many_request_threads_recording_while_the_thread_flushes(app: Flask, key: Key) -> None:
    rec = BatchRecorder(app, mode="thread", interval=0.01, batch_max=64)
    threads, each = 8, 250
    barrier = threading.Barrier(threads)

    def serve() -> None:
        barrier.wait()
        for i in range(each):
            rec.record(key.event(status=200 if i % 2 else 404))

    workers = [threading.Thread(target=serve) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(60)
    rec.shutdown()
    n = threads * each
    assert rec.pending() == 0
    assert count_rows(app, "usage_event") == n
    count, ok, _, binned = totals(app, key.id, "minute")
    assert (count, ok, binned) == (n, n // 2, n)


def test_shutdown_writes_what_is_queued(app: Flask, key: Key) -> None:
    rec = BatchRecorder(app, mode="thread", interval=3600)  # the timer never fires here
    for _ in range(20):
        rec.record(key.event())
    rec.shutdown()
    assert count_rows(app, "usage_event") == 20
    assert rec.pending() == 0


def test_a_forked_child_writes_its_own_events_and_not_the_parents(app: Flask, key: Key) -> None:
    rec = recorder(app)
    rec.record(key.event(status=200))
    rec.flush()  # the parent's engine now has pooled connections
    rec.record(key.event(status=201))  # queued in the parent only
    pid = os.fork()
    if pid == 0:  # the child: a gunicorn worker, in effect
        code = 1
        try:
            assert rec.pending() == 0, "the child inherited the parent's queue"
            for _ in range(3):
                rec.record(key.event(status=202))
            rec.flush()
            code = 0 if rec.pending() == 0 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    rec.flush()
    with app.app_context():
        from app.models import UsageRecord

        statuses = sorted(db.session.scalars(select(UsageRecord.status)).all())
    assert statuses == [200, 201, 202, 202, 202]


def test_events_with_odd_reported_fields_are_stored_cut_to_size(app: Flask, key: Key) -> None:
    rec = recorder(app)
    rec.record(
        UsageEvent(key.id, key.owner_id, "/p" * 500, "get" * 20, 200, float("nan"), None, AT)
    )
    rec.record(UsageEvent(key.id, key.owner_id, 12345, None, 200, -4.0, "", AT))  # type: ignore[arg-type]
    rec.flush()
    assert rec.pending() == 0
    with app.app_context():
        from app.models import UsageRecord

        rows = db.session.scalars(select(UsageRecord).order_by(UsageRecord.id)).all()
        assert len(rows[0].endpoint) == 200 and rows[0].method == ("GET" * 20)[:16]
        assert rows[0].response_ms == 0.0
        assert rows[1].endpoint == "12345" and rows[1].client_ip is None
