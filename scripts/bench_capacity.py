"""The inputs of docs/scaling.md, measured: what one validation costs Redis, what a busy
key costs the usage flush, and how fast the flush and the audit sealer can write.

    .venv/bin/python scripts/bench_capacity.py redis [--keys 10] [--per-key 1200]
    .venv/bin/python scripts/bench_capacity.py flush --database-url postgresql+psycopg://...
        [--rate 1000] [--endpoints 5] [--ips 20] [--events 200000] [--keys 1000]
    .venv/bin/python scripts/bench_capacity.py sealer --database-url postgresql+psycopg://...
        [--events 100000]

- `redis`: a private redis-server on a free port of 127.0.0.1 (never the shared one: its
  CPU would be everyone's), the real app in-process with its limits there, `--per-key`
  validations of each of `--keys` enterprise keys (1,200 fills a key's minute). From
  Redis's own INFO: its CPU (user + system) per validation, commands per validation
  (round trips: the client sends one command at a time) and memory per busy key.
- `flush`: the usage recorder's real flush (manual mode) on the database given
  (emptied). First one busy key: `--rate` validations a second for one minute of event
  times, spread over `--endpoints` endpoints and `--ips` client IPs; rows added per
  table and bytes (PostgreSQL: table + index sizes; SQLite: page count). Then the
  flush's maximum: `--events` events over `--keys` keys, flushed in the recorder's
  batches (USAGE_BATCH_MAX); events and rows written a second, wall clock.
- `sealer`: `--events` audit events appended with the trail's bulk insert (what the
  flush does), then sealed by the real sealer (`seal_all`: leaf order, tree, signed
  checkpoints) on the database given (emptied); events sealed a second, wall clock.

Wall-clock rates depend on the machine's load (printed with each result); CPU figures
do not. Prints one JSON object per measurement. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

ROLLUP_TABLES = (
    "usage_event",
    "usage_rollup",
    "usage_latency_bin",
    "usage_top_rollup",
    "api_key",
    "audit_event",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def base_env(tmp: Path, database_url: str | None) -> dict[str, str]:
    return {
        "KEYLEDGER_INSTANCE": str(tmp),
        "SECRET_KEY": "bench-secret",
        "KEY_PEPPER": "bench-pepper",
        "DATABASE_URL": database_url or f"sqlite:///{tmp / 'bench.db'}",
        "LOG_LEVEL": "WARNING",
        "ARGON2_TIME_COST": "1",
        "ARGON2_MEMORY_COST": "8",
        "ARGON2_PARALLELISM": "1",
    }


def redis_info(port: int) -> dict[str, Any]:
    import redis

    client = redis.Redis(host="127.0.0.1", port=port)
    cpu = client.info("cpu")
    stats = client.info("commandstats")
    memory = client.info("memory")
    client.close()
    return {
        "cpu": float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]),
        "calls": sum(int(v["calls"]) for v in stats.values()),
        "by_command": {k: int(v["calls"]) for k, v in stats.items()},
        "memory": int(memory["used_memory"]),
    }


def bench_redis(args: argparse.Namespace) -> None:
    import bench_validate_cost as cost

    tmp = Path(tempfile.mkdtemp(prefix="kl-capacity-"))
    port = free_port()
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1"]
    server = subprocess.Popen(
        [*command, "--save", "", "--appendonly", "no", "--dir", str(tmp)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        env = base_env(tmp, None)
        env["RATELIMIT_STORAGE_URI"] = f"redis://127.0.0.1:{port}/0"
        keys = cost.make_keys(env, args.keys)
        from app import create_app

        app = create_app()
        bodies = [json.dumps({"key": k}).encode() for k in keys]
        call = cost.caller(app, "/api/v1/keys/validate", bodies)
        call(0)  # loads the script; the first charge of one key
        before = redis_info(port)
        n = args.keys * args.per_key - 1
        started = time.perf_counter()
        for i in range(1, n + 1):
            call(i)
        seconds = time.perf_counter() - started
        after = redis_info(port)
        if seconds > 60:
            print("warning: the run outlasted a minute; windows were trimmed", file=sys.stderr)
        commands = {
            k: round((after["by_command"].get(k, 0) - before["by_command"].get(k, 0)) / n, 3)
            for k in after["by_command"]
            if after["by_command"].get(k, 0) != before["by_command"].get(k, 0)
        }
        print(
            json.dumps(
                {
                    "measure": "redis per validation",
                    "validations": n,
                    "keys": args.keys,
                    "redis_cpu_us": round((after["cpu"] - before["cpu"]) / n * 1e6, 1),
                    # One EVALSHA is the one round trip; the commands the script
                    # runs inside Redis are counted too.
                    "commands_per_validation": round((after["calls"] - before["calls"]) / n, 3),
                    "by_command": commands,
                    "memory_per_busy_key_bytes": round(
                        (after["memory"] - before["memory"]) / args.keys
                    ),
                    "entries_per_key": args.per_key,
                    "seconds": round(seconds, 1),
                    "load_avg_1m": round(os.getloadavg()[0], 1),
                }
            ),
            flush=True,
        )
    finally:
        server.terminate()
        server.wait(10)


def fresh_app(args: argparse.Namespace, **extra: Any) -> Any:
    """A migrated, emptied database and an app on it (recorder manual, sealer off)."""
    from flask_migrate import upgrade

    from app import create_app
    from app.extensions import db

    tmp = Path(tempfile.mkdtemp(prefix="kl-capacity-"))
    os.environ.update(base_env(tmp, args.database_url))
    app = create_app(
        {"USAGE_MODE": "manual", "AUDIT_SEALER": False, "WEBHOOK_DISPATCHER": False, **extra}
    )
    with app.app_context():
        if db.engine.dialect.name == "postgresql":
            with db.engine.begin() as conn:
                conn.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        upgrade(directory=str(ROOT / "migrations"))
    return app


def table_sizes(app: Any) -> dict[str, tuple[int, int]]:
    """(rows, bytes) per table: PostgreSQL's table + index + toast size; SQLite's pages
    per table from dbstat when compiled in, else the whole file for every table."""
    from app.extensions import db

    out: dict[str, tuple[int, int]] = {}
    with app.app_context(), db.engine.connect() as conn:
        pg = db.engine.dialect.name == "postgresql"
        for table in ROLLUP_TABLES:
            rows = conn.exec_driver_sql(f'SELECT count(*) FROM "{table}"').scalar_one()
            if pg:
                size = conn.exec_driver_sql(
                    f"SELECT pg_total_relation_size('\"{table}\"')"
                ).scalar_one()
            else:
                try:
                    size = conn.exec_driver_sql(
                        f"SELECT sum(pgsize) FROM dbstat WHERE name = '{table}' "
                        f"OR name IN (SELECT name FROM sqlite_master WHERE tbl_name = '{table}')"
                    ).scalar_one()
                except Exception:
                    size = 0
            out[table] = (int(rows), int(size or 0))
    return out


def postgres_cpu(app: Any) -> float:
    """CPU seconds (user + system) of the PostgreSQL backends on this database, read
    from /proc (the server runs on this machine); 0.0 elsewhere or on SQLite."""
    from app.extensions import db

    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            return 0.0
        with db.engine.connect() as conn:
            pids = conn.exec_driver_sql(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            ).scalars()
            total = 0.0
            for pid in pids:
                try:
                    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def make_owner_keys(app: Any, n: int) -> list[tuple[int, int]]:
    """(key id, owner id) of `n` keys of one enterprise user."""
    from app import accounts
    from app.extensions import db
    from app.keys import lifecycle

    with app.app_context():
        user = accounts.create_user(
            db.session,
            app.extensions["keyledger.passwords"],
            email="capacity@example.com",
            password="bench password 123",
            tier="enterprise",
        )
        policy = app.extensions["keyledger.key_policy"]
        made = [
            lifecycle.create_key(
                db.session, policy, user, name=f"k{i}", scopes=["keys:read"], lifetime_days=30
            ).key
            for i in range(n)
        ]
        out = [(k.id, user.id) for k in made]
        db.session.remove()
    return out


def bench_flush(args: argparse.Namespace) -> None:
    from app.usage import UsageEvent

    app = fresh_app(args)
    recorder = app.extensions["keyledger.usage"]
    keys = make_owner_keys(app, max(args.keys, 1))
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=2)

    # One busy key for one minute of event times, flushed once a second as a worker does.
    key_id, owner_id = keys[0]
    before = table_sizes(app)
    for second in range(60):
        for j in range(args.rate):
            at = start + timedelta(seconds=second, microseconds=j * (1_000_000 // args.rate))
            recorder.record(
                UsageEvent(
                    key_id=key_id,
                    owner_id=owner_id,
                    endpoint=f"/v1/orders/{j % args.endpoints}",
                    method="GET",
                    status=200,
                    response_ms=1.0 + (j % 50) / 10,
                    client_ip=f"10.0.0.{j % args.ips + 1}",
                    at=at,
                    tier="enterprise",
                )
            )
        with app.app_context():
            recorder.flush()
    after = table_sizes(app)
    added = {
        t: {"rows": after[t][0] - before[t][0], "bytes": after[t][1] - before[t][1]}
        for t in ROLLUP_TABLES
        if after[t] != before[t]
    }
    print(
        json.dumps(
            {
                "measure": "one busy key, one minute",
                "database": "postgresql" if args.database_url else "sqlite",
                "validations_per_second": args.rate,
                "endpoints": args.endpoints,
                "client_ips": args.ips,
                "added": added,
                "rows_per_minute": sum(v["rows"] for v in added.values()),
                "bytes_per_minute": sum(v["bytes"] for v in added.values()),
                "load_avg_1m": round(os.getloadavg()[0], 1),
            }
        ),
        flush=True,
    )

    # The flush's maximum: many keys, the recorder's batches, wall clock and CPU.
    before = table_sizes(app)
    later = start + timedelta(minutes=5)
    for i in range(args.events):
        key_id, owner_id = keys[i % len(keys)]
        recorder.record(
            UsageEvent(
                key_id=key_id,
                owner_id=owner_id,
                endpoint=f"/v1/orders/{i % args.endpoints}",
                method="POST",
                status=200,
                response_ms=2.0,
                client_ip=f"10.1.{i % 250}.{i % args.ips + 1}",
                at=later + timedelta(microseconds=i * 300),
                tier="enterprise",
            )
        )
    pg = postgres_cpu(app)
    started, cpu = time.perf_counter(), time.process_time()
    with app.app_context():
        recorder.flush()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    pg = postgres_cpu(app) - pg
    after = table_sizes(app)
    rows = sum(after[t][0] - before[t][0] for t in ROLLUP_TABLES)
    print(
        json.dumps(
            {
                "measure": "flush maximum",
                "events": args.events,
                "keys": len(keys),
                "seconds": round(seconds, 2),
                "events_per_second": round(args.events / seconds),
                "rows_per_second": round(rows / seconds),
                "rows": rows,
                "worker_cpu_us_per_event": round(cpu / args.events * 1e6, 1),
                "postgres_cpu_us_per_event": round(pg / args.events * 1e6, 1),
                "load_avg_1m": round(os.getloadavg()[0], 1),
            }
        ),
        flush=True,
    )


def bench_sealer(args: argparse.Namespace) -> None:
    from sqlalchemy import insert

    from app.audit import log as auditlog
    from app.audit import service, trail
    from app.extensions import db
    from app.models import AuditEvent

    app = fresh_app(args)
    table = AuditEvent.__table__
    with app.app_context():
        auditlog.seal_all(db.engine, service.settings())  # the log's first checkpoint
        started = time.perf_counter()
        for first in range(0, args.events, 5000):
            batch = [
                trail.row(
                    "key.validated",
                    actor=f"key:k{i % 977:012d}",
                    actor_ip=f"10.0.{i % 250}.{i % 199}",
                    target=f"key:k{i % 977:012d}",
                    details={"recorded": "first per key, client IP and minute; all in usage"},
                )
                for i in range(first, min(first + 5000, args.events))
            ]
            with db.engine.begin() as conn:
                conn.execute(insert(table), batch)
        appended = time.perf_counter() - started
        pg = postgres_cpu(app)
        started, cpu = time.perf_counter(), time.process_time()
        sealed = auditlog.seal_all(db.engine, service.settings())
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        pg = postgres_cpu(app) - pg
        sizes = table_sizes(app)["audit_event"]
        db.engine.dispose()
    print(
        json.dumps(
            {
                "measure": "sealer",
                "database": "postgresql" if args.database_url else "sqlite",
                "events": sealed,
                "append_events_per_second": round(args.events / appended),
                "seal_seconds": round(seconds, 2),
                "sealed_events_per_second": round(sealed / seconds),
                "sealer_cpu_us_per_event": round(cpu / sealed * 1e6, 1),
                "postgres_cpu_us_per_event": round(pg / sealed * 1e6, 1),
                "audit_bytes_per_event": round(sizes[1] / max(sizes[0], 1)),
                "load_avg_1m": round(os.getloadavg()[0], 1),
            }
        ),
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    r = sub.add_parser("redis")
    r.add_argument("--keys", type=int, default=10)
    r.add_argument("--per-key", type=int, default=1200)
    f = sub.add_parser("flush")
    f.add_argument("--database-url")
    f.add_argument("--rate", type=int, default=1000)
    f.add_argument("--endpoints", type=int, default=5)
    f.add_argument("--ips", type=int, default=20)
    f.add_argument("--events", type=int, default=200_000)
    f.add_argument("--keys", type=int, default=1000)
    s = sub.add_parser("sealer")
    s.add_argument("--database-url")
    s.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    {"redis": bench_redis, "flush": bench_flush, "sealer": bench_sealer}[args.what](args)


if __name__ == "__main__":
    main()
