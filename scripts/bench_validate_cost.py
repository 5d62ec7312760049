"""CPU per request of a validation against a bare Flask no-op, in-process, through the
apps' WSGI callables (no server, no sockets, no load generator).

    .venv/bin/python scripts/bench_validate_cost.py [--blocks 15] [--size 500] [--keys 50]
        [--redis redis://127.0.0.1:6379/7] [--database-url postgresql+psycopg://...]
        [--profile out.prof] [--only validate] [--count N]

It migrates a fresh database (a temporary SQLite file, or the PostgreSQL database given,
emptied), makes `--keys` enterprise keys through the app, builds the real app as a
server builds it (not TESTING: usage recorder in thread mode, audit sealer on, JSON
logs, metrics, the request-id middleware) and a bare Flask app with one no-op route,
then calls each WSGI callable with a prebuilt environ, in interleaved blocks:

- `bare`: POST /bench/noop on the bare Flask app (the yardstick);
- `app_noop`: the same no-op route on the real app (every app-wide hook);
- `validate`: POST /api/v1/keys/validate over the keys (every answer must be 200).

Per request it reports the request thread's CPU (`time.thread_time`) and the whole
process's (`time.process_time`: the usage flush and sealer threads too, with a flush at
the end of each block so every event written is paid in its block), median of blocks.
CPU time does not count waiting for Redis or the database, so the figures move little
with the machine's load, unlike requests/s; ratios to `bare` cancel most of the
machine's speed. `--profile` writes a cProfile of the validation blocks.

Instructions per request, which no other process's load moves (`--state` keeps the
database between runs; `--only bare` for the yardstick):

    valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.%p \
        .venv/bin/python scripts/bench_validate_cost.py --state /tmp/kl-cost \
        --only validate --count 500 --callgrind
    # the dump after the count (the file ending .2 or the last one written):
    # its "summary:" line / 500 = instructions per validation
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def environ(path: str, body: bytes) -> dict[str, Any]:
    """What a WSGI server hands the app for one POST from 127.0.0.1 (a fresh stream
    each call: the app reads it)."""
    return {
        "REQUEST_METHOD": "POST",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "40000",
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_USER_AGENT": "bench",
        "HTTP_ACCEPT": "*/*",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }


def caller(app: Any, path: str, bodies: list[bytes]) -> Callable[[int], None]:
    """call(i): the i-th request through `app` as a server would (status checked, body
    consumed, the iterable closed)."""
    statuses: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        statuses.append(status)
        return lambda data: None

    def call(i: int) -> None:
        body = bodies[i % len(bodies)]
        result = app(environ(path, body), start_response)
        try:
            for _ in result:
                pass
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        status = statuses.pop()
        if not status.startswith("200"):
            raise SystemExit(f"{path} answered {status}")

    return call


def tell_callgrind(control: str, command: str) -> None:
    """Run `callgrind_control COMMAND <this pid>` and wait for it. Callgrind reads the
    command only while this process runs code, so wait in a short sleep loop, not in
    a blocking wait (no other thread may be running to let it through)."""
    proc = subprocess.Popen([control, command, str(os.getpid())], stdout=subprocess.DEVNULL)
    while proc.poll() is None:
        time.sleep(0.01)
    if proc.returncode:
        raise SystemExit(f"callgrind_control {command} failed")


def bare_app() -> Any:
    from flask import Flask, jsonify

    bare = Flask("bare")
    bare.add_url_rule("/bench/noop", "noop", lambda: jsonify({"ok": True}), methods=["POST"])
    return bare


def migrate_only() -> None:
    from flask_migrate import upgrade

    from app import create_app
    from app.extensions import db

    setup = create_app({"AUDIT_SEALER": False, "USAGE_MODE": "sync"})
    with setup.app_context():
        upgrade(directory=str(ROOT / "migrations"))
        db.engine.dispose()


def make_keys(env: dict[str, str], n: int) -> list[str]:
    """Migrate the database and make `n` enterprise keys through the app."""
    from flask_migrate import upgrade

    from app import accounts, create_app
    from app.extensions import db
    from app.keys import lifecycle

    os.environ.update(env)
    setup = create_app({"AUDIT_SEALER": False, "USAGE_MODE": "sync"})
    with setup.app_context():
        if db.engine.dialect.name == "postgresql":
            with db.engine.begin() as conn:
                conn.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        upgrade(directory=str(ROOT / "migrations"))
        user = accounts.create_user(
            db.session,
            setup.extensions["keyledger.passwords"],
            email="bench@example.com",
            password="bench password 123",
            tier="enterprise",
        )
        policy = setup.extensions["keyledger.key_policy"]
        made = [
            lifecycle.create_key(
                db.session, policy, user, name=f"bench{i}", scopes=["keys:read"], lifetime_days=30
            ).plaintext
            for i in range(n)
        ]
        db.session.remove()
        db.engine.dispose()
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--blocks", type=int, default=15)
    parser.add_argument("--size", type=int, default=500)
    parser.add_argument("--keys", type=int, default=50)
    parser.add_argument("--redis", help="Redis limits (default memory://)")
    parser.add_argument("--database-url", help="PostgreSQL (emptied); default a temp SQLite")
    parser.add_argument("--profile", help="write a cProfile of the validation blocks here")
    parser.add_argument("--only", choices=["bare", "app_noop", "validate"])
    parser.add_argument("--count", type=int, help="only N validations after warming")
    parser.add_argument(
        "--callgrind",
        action="store_true",
        help="with --count, under valgrind --tool=callgrind: zero the counters before "
        "the count and dump after it",
    )
    parser.add_argument(
        "--state",
        help="a folder kept between runs: the first run makes the database and keys there, "
        "later ones reuse them (so a callgrind run skips the set-up)",
    )
    args = parser.parse_args()

    tmp = Path(args.state or tempfile.mkdtemp(prefix="kl-cost-"))
    tmp.mkdir(parents=True, exist_ok=True)
    env = {
        "KEYLEDGER_INSTANCE": str(tmp),
        "SECRET_KEY": "bench-secret",
        "KEY_PEPPER": "bench-pepper",
        "DATABASE_URL": args.database_url or f"sqlite:///{tmp / 'bench.db'}",
        "RATELIMIT_STORAGE_URI": args.redis or "memory://",
        "RATELIMIT_KEY_PREFIX": f"cost-{os.getpid()}",
        "LOG_LEVEL": "WARNING",
        "ARGON2_TIME_COST": "1",  # the bench user's password only
        "ARGON2_MEMORY_COST": "8",
        "ARGON2_PARALLELISM": "1",
    }
    if args.callgrind:
        # Under valgrind a request is ~50 times slower: the key cache's 30 s would
        # expire within the count and reload keys a busy worker reloads twice a minute.
        env["KEY_CACHE_MAX_AGE"] = "3600"
    saved = tmp / "keys.json"
    if args.state and saved.exists():
        keys = json.loads(saved.read_text())
        os.environ.update(env)
        migrate_only()  # the kept database, brought to this tree's schema
    else:
        keys = make_keys(env, args.keys)
        saved.write_text(json.dumps(keys))

    from flask import jsonify

    from app import create_app
    from app.extensions import csrf

    quiet: dict[str, Any] = {}
    if args.callgrind:
        # The background threads tick by the clock, and under valgrind the clock runs
        # ~50 times slower per request: their passes would land in the count as many
        # times as the machine's load stretches it. The usage flush is called at the
        # end of the count instead (so it is counted once per event); the sealer and
        # the metrics sampler, which no validation waits for, are left out.
        quiet = {
            "USAGE_MODE": "manual",
            "AUDIT_SEALER": False,
            "WEBHOOK_DISPATCHER": False,
            "METRICS_SAMPLE_INTERVAL": 3600.0,
        }
    app = create_app(quiet)
    app.add_url_rule(
        "/bench/noop", "bench_noop", csrf.exempt(lambda: jsonify({"ok": True})), methods=["POST"]
    )
    recorder = app.extensions["keyledger.usage"]
    noop_body = [b'{"key": "none"}']
    bodies = [json.dumps({"key": k}).encode() for k in keys]
    calls = {
        "bare": caller(bare_app(), "/bench/noop", noop_body),
        "app_noop": caller(app, "/bench/noop", noop_body),
        "validate": caller(app, "/api/v1/keys/validate", bodies),
    }
    if args.only:
        calls = {args.only: calls[args.only]}
    for call in calls.values():  # warm: every key cached, every statement prepared
        for i in range(max(2 * len(bodies), 200)):
            call(i)
    with app.app_context():
        recorder.flush()

    if args.count:
        # Under callgrind the counters are zeroed here and dumped after the count, so
        # the dump holds the requests (and their flush) and none of the start-up.
        callgrind = shutil.which("callgrind_control") if args.callgrind else None
        minute = 0
        if callgrind:
            # Two things would otherwise land in the count by chance, by how long it
            # runs: a full garbage collection of the start-up's heap, and each key's
            # once-a-minute key.validated event (one per key at each minute boundary
            # crossed). So the heap is collected and frozen, and the count starts with
            # a minute: every key's event of that minute is in it, once. A count that
            # crosses into another minute (a loaded machine) is reported.
            gc.collect()
            gc.freeze()
            time.sleep(60 - time.time() % 60)
            minute = int(time.time() // 60)
            tell_callgrind(callgrind, "--zero")
        call = calls.get("validate") or next(iter(calls.values()))
        for i in range(args.count):
            call(i)
        with app.app_context():
            recorder.flush()
        if callgrind:
            tell_callgrind(callgrind, "--dump")
            if int(time.time() // 60) != minute:
                print("the count crossed a minute boundary: run it again", file=sys.stderr)
        return

    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
    thread: dict[str, list[float]] = {name: [] for name in calls}
    process: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(args.blocks):
        for name, call in calls.items():
            profiled = profiler is not None and (name == "validate" or args.only == name)
            t0, p0 = time.thread_time(), time.process_time()
            if profiled:
                profiler.enable()
            for i in range(args.size):
                call(i)
            t1 = time.thread_time()
            with app.app_context():
                recorder.flush()  # the events of this block, written in this block
            if profiled:
                profiler.disable()
            p1 = time.process_time()
            thread[name].append((t1 - t0) / args.size * 1e6)
            process[name].append((p1 - p0) / args.size * 1e6)
    if profiler is not None:
        profiler.dump_stats(args.profile)

    result: dict[str, Any] = {
        "database": "postgresql" if args.database_url else "sqlite",
        "limits": "redis" if args.redis else "memory",
        "blocks": f"{args.blocks} x {args.size}",
    }
    for name in calls:
        result[f"{name}_thread_us"] = round(statistics.median(thread[name]), 1)
        result[f"{name}_process_us"] = round(statistics.median(process[name]), 1)
    if "bare" in calls and "validate" in calls:
        result["validate_over_bare_thread"] = round(
            result["validate_thread_us"] / result["bare_thread_us"], 2
        )
    result["load_avg_1m"] = round(os.getloadavg()[0], 1)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
