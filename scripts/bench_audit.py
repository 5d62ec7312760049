"""Audit log benchmark: append, seal and verify rates on SQLite, and verify's peak memory.

    .venv/bin/python scripts/bench_audit.py --events 1000000
    .venv/bin/python scripts/bench_audit.py --events 1000000 --dir /tmp/kl-bench --workers 0 auto

Builds a fresh SQLite database (in a temporary directory, or in --dir, where an
existing bench.db of the same size is reused) through the real migrations, appends N
events with trail.row (what trail.record adds), seals them in batches with the real
sealer (signing a checkpoint per batch), then runs `verify_log` in a fresh child
process per size and worker setting ("0": one process; "auto": what `flask audit
verify` picks; or a number), so peak RSS is its own. CPU time counts the verify
process and its worker processes. With --offline, also exports the log and times
the single-file offline verifier on it under `python -I`, with its default worker
processes and with `--workers 0` (--offline-workers). Prints Markdown tables for
docs/performance.md.
Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def make_app(tmp: Path, url: str):
    from app import create_app

    return create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": url,
            "INSTANCE_PATH": str(tmp / "instance"),
            "SECRET_KEY": "bench",
            "KEY_PEPPER": "bench",
            "AUDIT_SEAL_BATCH": 10000,
        }
    )


def build(tmp: Path, n: int) -> dict[str, float]:
    from flask_migrate import upgrade
    from sqlalchemy import insert

    from app.audit import log as auditlog
    from app.audit import service, trail
    from app.extensions import db
    from app.models import AuditEvent

    url = f"sqlite:///{tmp / 'bench.db'}"
    app = make_app(tmp, url)
    table = AuditEvent.__table__
    with app.app_context():
        upgrade()
        started = time.perf_counter()
        batch = []
        for i in range(n):
            batch.append(
                trail.row(
                    "key.validated",
                    actor=f"key:k{i % 977}",
                    actor_ip=f"10.0.{i % 250}.{i % 199}",
                    target=f"key:k{i % 977}",
                    details={"n": i, "note": "bench"},
                )
            )
            if len(batch) == 10000:
                with db.engine.begin() as conn:
                    conn.execute(insert(table), batch)
                batch.clear()
        if batch:
            with db.engine.begin() as conn:
                conn.execute(insert(table), batch)
        appended = time.perf_counter() - started
        started = time.perf_counter()
        auditlog.seal_all(db.engine, service.settings())
        sealed = time.perf_counter() - started
        db.engine.dispose()
    return {"append_s": appended, "seal_s": sealed}


def _stop_fork_server() -> None:
    """The verifier's workers are the fork server's children (app/audit/core/parallel.py),
    reaped by it, so RUSAGE_CHILDREN counts them only once the fork server has ended and
    been waited for: it runs until this process exits unless stopped here (its own
    imports then count too, a cost of verifying with workers)."""
    from multiprocessing import forkserver

    server = forkserver._forkserver  # the process-wide one the pools used
    if server._forkserver_pid is not None:
        server._stop()


def _reap_orphans() -> None:
    """Wait for every orphaned descendant reparented here (PR_SET_CHILD_SUBREAPER), so
    its CPU and peak RSS, and those of the children it reaped, count in RUSAGE_CHILDREN."""
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def verify_child(tmp: str, workers: str) -> None:
    """Run in a fresh process: verify, print JSON with time, CPU and peak RSS."""
    from app.audit import service
    from app.audit.verify import verify_log
    from app.extensions import db

    tmp_path = Path(tmp)
    app = make_app(tmp_path, f"sqlite:///{tmp_path / 'bench.db'}")
    with app.app_context():
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        settings = service.settings()
        wanted = None if workers == "auto" else int(workers)
        cpu = time.process_time()
        report = verify_log(db.engine, settings, anchor_path=settings.anchor.path, workers=wanted)
        cpu = time.process_time() - cpu
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        _stop_fork_server()
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(
        json.dumps(
            {
                "ok": report.ok,
                "events": report.events,
                "checkpoints": report.checkpoints,
                "seconds": report.seconds,
                "cpu_seconds": cpu + kids.ru_utime + kids.ru_stime,
                "rss_before_mib": base / 1024,
                "rss_peak_mib": peak / 1024,
                "worker_rss_peak_mib": kids.ru_maxrss / 1024,
                "summary": report.summary(),
            }
        )
    )


def offline_bench(tmp: Path, workers: list[str]) -> list[dict[str, float]]:
    """Export the log, build the single-file verifier and time it on the export, once
    per worker setting ("auto": its default), each run from a fresh helper process
    so peak RSS and CPU (the verifier and its worker processes) are its own."""
    from app.audit import log as auditlog
    from app.audit import service
    from app.audit.bundle import build_verifier
    from app.extensions import db

    app = make_app(tmp, f"sqlite:///{tmp / 'bench.db'}")
    export = tmp / "export.jsonl"
    with app.app_context():
        settings = service.settings()
        vkey = settings.signer.vkey
        if not export.exists():
            with db.engine.connect() as conn, export.open("w") as fh:
                for line in auditlog.export_lines(conn, settings):
                    fh.write(line)
        db.engine.dispose()
    build_verifier(tmp / "keyledger_verify.pyz")
    runs = []
    for w in workers:
        child = ["--offline-child", str(tmp), "--child-workers", w, "--child-vkey", vkey]
        out = subprocess.run(
            [sys.executable, __file__, *child],
            check=True,
            capture_output=True,
            text=True,
        )
        print(out.stderr.strip(), file=sys.stderr)
        runs.append({**json.loads(out.stdout.strip().splitlines()[-1]), "workers": w})
    return runs


def offline_child(tmp: str, workers: str, vkey: str) -> None:
    """Run in a fresh process: the offline verifier on the export, as an auditor
    would (python -I), printing JSON with wall time, CPU and peak RSS."""
    folder = Path(tmp)
    cmd = [sys.executable, "-I", str(folder / "keyledger_verify.pyz"), "export"]
    cmd += [str(folder / "export.jsonl"), "--vkey", vkey]
    if workers != "auto":
        cmd += ["--workers", workers]
    # The verifier's fork server outlives it (nobody waits for it) and reaps its workers:
    # orphaned, it comes here instead of to init, and is waited for below.
    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    _reap_orphans()
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert done.returncode == 0, done.stderr
    print(done.stdout.strip(), file=sys.stderr)
    print(
        json.dumps(
            {
                "seconds": wall,
                "cpu_seconds": kids.ru_utime + kids.ru_stime,
                "rss_peak_mib": kids.ru_maxrss / 1024,
                "bytes": (folder / "export.jsonl").stat().st_size,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, nargs="+", default=[100000, 1000000])
    parser.add_argument("--dir", help="build here and keep (reused when the size matches)")
    parser.add_argument("--workers", nargs="+", default=["0", "auto"])
    parser.add_argument("--offline", action="store_true", help="also time the offline verifier")
    parser.add_argument(
        "--offline-workers", nargs="+", default=["auto", "0"], help="its --workers settings"
    )
    parser.add_argument("--verify-child")
    parser.add_argument("--offline-child")
    parser.add_argument("--child-workers", default="0")
    parser.add_argument("--child-vkey")
    args = parser.parse_args()
    if args.verify_child:
        verify_child(args.verify_child, args.child_workers)
        return
    if args.offline_child:
        offline_child(args.offline_child, args.child_workers, args.child_vkey)
        return
    rows = []
    offline_rows: list[tuple[int, dict, float]] = []
    for n in args.events:
        with tempfile.TemporaryDirectory(prefix="bench-audit-") as scratch:
            tmp = Path(args.dir) / str(n) if args.dir else Path(scratch)
            tmp.mkdir(parents=True, exist_ok=True)
            built: dict[str, float] | None = None
            if not (tmp / "bench.db").exists():
                built = build(tmp, n)
            for workers in args.workers:
                out = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--verify-child",
                        str(tmp),
                        "--child-workers",
                        workers,
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                    env={**os.environ, "PYTHONPATH": str(ROOT)},
                ).stdout
                v = json.loads(out.strip().splitlines()[-1])
                assert v["ok"], v["summary"]
                assert v["events"] == n, v["summary"]
                rows.append((n, built, workers, v, os.getloadavg()[0]))
                print(v["summary"], file=sys.stderr)
            if args.offline:
                for o in offline_bench(tmp, args.offline_workers):
                    offline_rows.append((n, o, os.getloadavg()[0]))
    print(
        "| events | appended/s | sealed/s | checkpoints | verify workers | verified/s (wall) | "
        "verified/s (CPU) | verify time | RSS before verify | peak RSS | worker peak RSS | "
        "load (1 min) |"
    )
    print("| ---: | ---: | ---: | ---: | :-: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for n, built, workers, v, load in rows:
        app_r = f"{n / built['append_s']:,.0f}" if built else "reused"
        seal_r = f"{n / built['seal_s']:,.0f}" if built else "reused"
        worker_rss = f"{v['worker_rss_peak_mib']:.0f} MiB" if workers != "0" else "-"
        print(
            f"| {n:,} | {app_r} | {seal_r} | {v['checkpoints']} | {workers} | "
            f"{n / v['seconds']:,.0f} | {n / v['cpu_seconds']:,.0f} | {v['seconds']:.2f} s | "
            f"{v['rss_before_mib']:.0f} MiB | {v['rss_peak_mib']:.0f} MiB | {worker_rss} | "
            f"{load:.2f} |"
        )

    if offline_rows:
        print()
        print(
            "| events | export size | offline --workers | offline verified/s (wall) | (CPU) "
            "| peak RSS | load |"
        )
        print("| ---: | ---: | :-: | ---: | ---: | ---: | ---: |")
        for n, o, load in offline_rows:
            print(
                f"| {n:,} | {o['bytes'] / 2**20:.0f} MiB | {o['workers']} | "
                f"{n / o['seconds']:,.0f} | {n / o['cpu_seconds']:,.0f} | "
                f"{o['rss_peak_mib']:.0f} MiB | {load:.2f} |"
            )


if __name__ == "__main__":
    main()
