"""Validation throughput against a no-op endpoint of the same app and a bare Flask
no-op, under gunicorn.

    .venv/bin/python scripts/bench_validate.py [--workers 2] [--duration 10] [--rounds 3]
        [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/kl_bench]
        [--redis redis://127.0.0.1:6379/3] [--strategies moving-window,...]

For each configuration it migrates a fresh database, makes enterprise keys, starts
gunicorn (sync workers) on 127.0.0.1 with limits, usage recording and audit all on,
and drives it with wrk (Debian's package; a bounded Python client when wrk is absent):
POST /bench/noop (returns {"ok": true}, registered by this script on the same app)
and POST /api/v1/keys/validate with live keys, alternating, `rounds` times each.
It prints requests/s, the validate/no-op ratio (median of rounds), the workers' own CPU
time per request of each (from /proc: load-independent, unlike requests/s on a machine
whose cores wrk and Redis share), Redis's and PostgreSQL's CPU per validation, how idle
the machine stayed, the load average, and checks that every
validation answered 200: the load is spread over `--keys` enterprise keys (1200 a
minute each, the real limit) so every request is counted and none is refused.
Finally it times invalid_key for an unknown id against a wrong secret in-process (the
two must cost the same).

Nothing listens beyond 127.0.0.1; every process it starts is stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))


def bench_app() -> Any:
    """The real app plus one no-op route: the baseline shares every hook and middleware.

    Also two probes for --limit-probe: the no-op plus the per-key tier limit, once as
    the issue words it (Flask-Limiter's dynamic limit decorator, its headers on) and
    once through app/ratelimit.py's `charge`, which the API uses.
    """
    from datetime import UTC, datetime

    from flask import current_app, jsonify, request

    from app import create_app, ratelimit
    from app.extensions import csrf
    from app.keys.cache import KeyRecord
    from app.limiter import limiter_of

    app = create_app()
    limiter = limiter_of(app)

    @csrf.exempt
    def noop() -> Any:
        return jsonify({"ok": True})

    def public_id() -> str:
        parts = str((request.get_json(silent=True) or {}).get("key", "")).split(".")
        return parts[1] if len(parts) == 3 else "unknown"

    @csrf.exempt
    @limiter.limit(
        lambda: ratelimit.tier_limit("enterprise", current_app.config),
        key_func=public_id,
        scope="bench-probe",
    )
    def decorated() -> Any:
        return jsonify({"ok": True})

    @csrf.exempt
    def charged() -> Any:
        forever = datetime.max.replace(tzinfo=UTC)
        record = KeyRecord(0, public_id(), 0, "probe", "enterprise", (), forever, None, b"")
        c = ratelimit.charge(request.remote_addr, record)
        response = jsonify({"ok": True})
        response.headers["X-RateLimit-Limit"] = str(c.limit)
        response.headers["X-RateLimit-Remaining"] = str(c.remaining)
        response.headers["X-RateLimit-Reset"] = str(c.reset)
        return response

    app.add_url_rule("/bench/noop", "bench_noop", noop, methods=["POST"])
    app.add_url_rule("/bench/decorated", "bench_decorated", decorated, methods=["POST"])
    app.add_url_rule("/bench/charged", "bench_charged", charged, methods=["POST"])
    return app


def bare_app() -> Any:
    """A bare Flask app with the same no-op route: no extensions, hooks or middleware.
    The yardstick for what the app's own machinery costs before any validation."""
    from flask import Flask, jsonify

    app = Flask("bare")
    app.add_url_rule("/bench/noop", "noop", lambda: jsonify({"ok": True}), methods=["POST"])
    return app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(cmd: list[str], env: dict[str, str], stdin: str | None = None) -> str:
    done = subprocess.run(
        cmd, cwd=ROOT, env=env, input=stdin, capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


# --policies: what issue 12 lets a key carry, set on every key (the worst case for the
# hot path): an IP allowlist the load generator's address is in (last of three ranges),
# ~200 bytes of metadata, a per-key limit of its own; and MONTHLY_QUOTAS for the tier.
POLICIES = (
    "        from app.keys import policies\n"
    "        policies.set_policies(db.session, k.key, actor=u, actor_ip=None,\n"
    "            ip_allowlist=['10.0.0.0/8', '2001:db8::/32', '127.0.0.0/8'],\n"
    "            meta={'customer': f'cus_{i:06d}', 'plan': 'enterprise-annual',\n"
    "                  'region': 'eu-west-1', 'features': ['export', 'sso', 'audit'],\n"
    "                  'contact': 'ops@example.com', 'seats': 250, 'trial': False})\n"
    "        policies.set_rate_limit(db.session, k.key, 100000, actor=u, actor_ip=None)\n"
)
POLICY_QUOTA = "enterprise=1000000000"


def setup_database(env: dict[str, str], n: int, with_policies: bool = False) -> list[str]:
    """Migrate, create an enterprise user and `n` keys through the app; return them."""
    run([str(BIN / "flask"), "--app", "app", "db", "upgrade"], env)
    code = (
        "from app import create_app, accounts\n"
        "from app.extensions import db\n"
        "from app.keys import lifecycle\n"
        "app = create_app()\n"
        "with app.app_context():\n"
        "    u = accounts.create_user(db.session, app.extensions['keyledger.passwords'],\n"
        "        email='bench@example.com', password='bench password 123', tier='enterprise')\n"
        f"    for i in range({n}):\n"
        "        k = lifecycle.create_key(db.session, app.extensions['keyledger.key_policy'],\n"
        "            u, name=f'bench{i}', scopes=['keys:read'], lifetime_days=30)\n"
        + (POLICIES if with_policies else "")
        + "        print(k.plaintext)\n"
    )
    return run([sys.executable, "-c", code], env).strip().splitlines()[-n:]


class Server:
    def __init__(
        self, env: dict[str, str], workers: int, log: Path, app: str = "bench_app()"
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env, self.workers, self.log, self.app = env, workers, log, app

    def __enter__(self) -> Server:
        cmd = [
            str(BIN / "gunicorn"),
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(self.workers),
            "--pythonpath",
            str(ROOT / "scripts"),
            "--log-level",
            "warning",
            f"bench_validate:{self.app}",
        ]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                cmd, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                req = urllib.request.Request(self.url + "/bench/noop", data=b"", method="POST")
                urllib.request.urlopen(req, timeout=2).close()
                return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if self.proc.poll() is not None:
                    raise SystemExit(f"gunicorn exited:\n{self.log.read_text()}") from None
                time.sleep(0.2)
        self.__exit__()
        raise SystemExit("gunicorn did not start")

    def __exit__(self, *exc: Any) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# Each request takes the next body in turn (one per key for validation).
LUA = """local bodies = {bodies}
local i = 0
request = function()
  i = i % #bodies + 1
  return wrk.format("POST", nil, {{["Content-Type"] = "application/json"}}, bodies[i])
end
"""


def load_wrk(
    url: str, bodies: list[str], duration: int, connections: int, tmp: Path
) -> dict[str, Any]:
    script = tmp / "post.lua"
    script.write_text(LUA.format(bodies="{" + ", ".join(json.dumps(b) for b in bodies) + "}"))
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "-s", str(script), url],
        capture_output=True,
        text=True,
        timeout=duration + 60,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": rps,
        "requests": total,
        "non_2xx": int(bad.group(1)) if bad else 0,
        "socket_errors": errors.group(1) if errors else "",
    }


def load_python(
    url: str, bodies: list[str], duration: int, connections: int, _: Path
) -> dict[str, Any]:
    """Fallback: `connections` threads posting for `duration` seconds."""
    stop = time.monotonic() + duration
    counts = [0] * connections
    bad = [0] * connections

    def worker(i: int) -> None:
        while time.monotonic() < stop:
            body = bodies[counts[i] % len(bodies)]
            req = urllib.request.Request(
                url, data=body.encode(), headers={"Content-Type": "application/json"}
            )
            try:
                urllib.request.urlopen(req, timeout=10).close()
            except urllib.error.HTTPError:
                bad[i] += 1
            counts[i] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"rps": sum(counts) / duration, "requests": sum(counts), "non_2xx": sum(bad)}


def cpu_seconds(pids: list[str]) -> float:
    """CPU seconds (user + system, every thread) used so far by these processes."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def workers_cpu(master: int) -> float:
    """CPU seconds used so far by gunicorn's workers.

    Why: wrk, Redis and other sessions share the machine's cores, so requests/s moves
    with their load; the workers' own CPU per request is what the app controls.
    """
    return cpu_seconds(Path(f"/proc/{master}/task/{master}/children").read_text().split())


def process_cpu(pattern: str) -> float:
    """CPU seconds used so far by the processes whose command line matches (pgrep -f)."""
    found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout
    return cpu_seconds(found.split())


def idle_ticks() -> tuple[int, int]:
    """(all, idle + iowait) jiffies of the whole machine, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields), fields[3] + fields[4]


class Meter:
    """Per request, over one load run: the workers' CPU, Redis's and PostgreSQL's, and
    how idle the machine was (a sync worker waiting on a round trip leaves its core idle)."""

    def __init__(self, master: int) -> None:
        self.master = master
        self.start = self._read()

    def _read(self) -> tuple[float, float, float, tuple[int, int]]:
        return (
            workers_cpu(self.master),
            process_cpu("redis-server"),
            process_cpu("postgres"),
            idle_ticks(),
        )

    def per_request(self, requests: int) -> dict[str, float]:
        end = self._read()
        (w0, r0, p0, (t0, i0)), (w1, r1, p1, (t1, i1)) = self.start, end
        return {
            "workers": (w1 - w0) / requests,
            "redis": (r1 - r0) / requests,
            "postgres": (p1 - p0) / requests,
            "idle": (i1 - i0) / max(1, t1 - t0),
        }


def measure(
    env: dict[str, str], keys: list[str], args: argparse.Namespace, tmp: Path, label: str
) -> dict[str, Any]:
    load = load_wrk if shutil.which("wrk") else load_python
    noop, valid, noop_cpu, valid_cpu, bare = [], [], [], [], []
    noop_meters, valid_meters = [], []
    with (
        Server(env, args.workers, tmp / "gunicorn.log") as server,
        Server(env, args.workers, tmp / "gunicorn-bare.log", "bare_app()") as plain,
    ):
        bodies = [json.dumps({"key": key}) for key in keys]
        load(server.url + "/api/v1/keys/validate", bodies, 2, args.connections, tmp)
        master = server.proc.pid
        for _ in range(args.rounds):
            bare.append(
                load(plain.url + "/bench/noop", ["{}"], args.duration, args.connections, tmp)["rps"]
            )
            meter = Meter(master)
            n = load(server.url + "/bench/noop", ["{}"], args.duration, args.connections, tmp)
            noop_meters.append(meter.per_request(n["requests"]))
            noop_cpu.append(noop_meters[-1]["workers"])
            meter = Meter(master)
            v = load(
                server.url + "/api/v1/keys/validate", bodies, args.duration, args.connections, tmp
            )
            # Includes the flush and sealer threads' work for these requests.
            valid_meters.append(meter.per_request(v["requests"]))
            valid_cpu.append(valid_meters[-1]["workers"])
            if v["non_2xx"]:
                raise SystemExit(f"{label}: {v['non_2xx']} validations were not 200: {v}")
            noop.append(n["rps"])
            valid.append(v["rps"])
    ratios = [v / n for v, n in zip(valid, noop, strict=True)]
    noop_bare = [n / b for n, b in zip(noop, bare, strict=True)]
    valid_bare = [v / b for v, b in zip(valid, bare, strict=True)]
    cpu_ratios = [n / v for v, n in zip(valid_cpu, noop_cpu, strict=True)]
    result = {
        "config": label,
        "noop_rps": round(statistics.median(noop)),
        "validate_rps": round(statistics.median(valid)),
        "ratio": round(statistics.median(ratios), 2),
        "ratios": [round(r, 2) for r in ratios],
        # Against a bare Flask no-op under the same gunicorn settings, round by round.
        "bare_rps": round(statistics.median(bare)),
        "noop_vs_bare": round(statistics.median(noop_bare), 2),
        "validate_vs_bare": round(statistics.median(valid_bare), 2),
        "noop_cpu_us": round(statistics.median(noop_cpu) * 1e6),
        "validate_cpu_us": round(statistics.median(valid_cpu) * 1e6),
        "cpu_ratio": round(statistics.median(cpu_ratios), 2),
        "redis_cpu_us": round(statistics.median(m["redis"] for m in valid_meters) * 1e6),
        "postgres_cpu_us": round(statistics.median(m["postgres"] for m in valid_meters) * 1e6),
        "idle_pct": {
            "noop": round(100 * statistics.median(m["idle"] for m in noop_meters), 1),
            "validate": round(100 * statistics.median(m["idle"] for m in valid_meters), 1),
        },
        "load_avg_1m": round(os.getloadavg()[0], 1),
    }
    print(json.dumps(result), flush=True)
    return result


def timing_parity(env: dict[str, str], key: str, n: int = 3000) -> dict[str, float]:
    """invalid_key for an unknown id vs a wrong secret, in-process, database lookup each time."""
    code = f"""
import json, statistics, time
from app import create_app
from app.extensions import db
from app.keys import format as kf, lifecycle
app = create_app({{"KEY_CACHE_TTL": 0}})
live = {key!r}
pid = live.split(".")[1]
with app.app_context():
    policy = app.extensions["keyledger.key_policy"]
    cases = {{"unknown_id": lambda: kf.assemble("klk", kf.new_public_id(), kf.new_secret()),
             "wrong_secret": lambda: kf.assemble("klk", pid, kf.new_secret())}}
    times = {{name: [] for name in cases}}
    for i in range({n}):
        for name, make in cases.items():
            raw = make()
            t = time.perf_counter()
            r = lifecycle.validate(db.session, policy, raw)
            times[name].append((time.perf_counter() - t) * 1e6)
            assert r.error == "invalid_key"
            db.session.rollback()
    print(json.dumps({{k: round(statistics.median(v), 1) for k, v in times.items()}}))
"""
    out = run([sys.executable, "-c", code], env).strip().splitlines()[-1]
    result = json.loads(out)
    print(json.dumps({"timing_median_us": result}), flush=True)
    return result


def limit_probe(
    env: dict[str, str], keys: list[str], args: argparse.Namespace, tmp: Path
) -> dict[str, Any]:
    """The no-op, the no-op behind Flask-Limiter's dynamic per-key limit, and the no-op
    plus `charge`: what the per-key limit alone costs each way (docs/api.md)."""
    load = load_wrk if shutil.which("wrk") else load_python
    routes = {"noop": "/bench/noop", "decorated": "/bench/decorated", "charged": "/bench/charged"}
    rps: dict[str, list[float]] = {name: [] for name in routes}
    cpu: dict[str, list[float]] = {name: [] for name in routes}
    bodies = [json.dumps({"key": key}) for key in keys]
    with Server(env, args.workers, tmp / "gunicorn.log") as server:
        load(server.url + "/bench/decorated", bodies, 2, args.connections, tmp)
        for _ in range(args.rounds):
            for name, path in routes.items():
                meter = Meter(server.proc.pid)
                n = load(server.url + path, bodies, args.duration, args.connections, tmp)
                if n["non_2xx"]:
                    raise SystemExit(f"{path}: {n['non_2xx']} answers were not 200: {n}")
                rps[name].append(n["rps"])
                cpu[name].append(meter.per_request(n["requests"])["workers"])
    result = {
        "config": f"limit probe, {args.workers} workers",
        **{f"{name}_rps": round(statistics.median(v)) for name, v in rps.items()},
        **{f"{name}_cpu_us": round(statistics.median(v) * 1e6) for name, v in cpu.items()},
        **{
            f"{name}_ratio": round(
                statistics.median(a / b for a, b in zip(rps[name], rps["noop"], strict=True)), 2
            )
            for name in ("decorated", "charged")
        },
    }
    print(json.dumps(result), flush=True)
    return result


def in_process(env: dict[str, str], keys: list[str], blocks: int, size: int = 400) -> None:
    """The validation's own CPU per request, in-process (Flask test client, the same app,
    Redis and database): `blocks` blocks of `size` validations over the keys, each timed
    with process_time. On a loaded machine this is steadier than requests/s, and two
    code trees run alternately compare within a few microseconds."""
    os.environ.update(env)
    from app import create_app

    app = create_app()
    client = app.test_client()
    bodies = [json.dumps({"key": key}).encode() for key in keys]
    headers = {"Content-Type": "application/json"}

    def block() -> float:
        started = time.process_time()
        for i in range(size):
            resp = client.post(
                "/api/v1/keys/validate", data=bodies[i % len(bodies)], headers=headers
            )
            if resp.status_code != 200:
                raise SystemExit(f"validation answered {resp.status_code}: {resp.get_data()!r}")
        return (time.process_time() - started) / size

    block()  # warm: every key cached
    per_request = [block() for _ in range(blocks)]
    print(
        json.dumps(
            {
                "config": "in-process",
                "validate_cpu_us": round(statistics.median(per_request) * 1e6, 1),
                "blocks_us": [round(x * 1e6) for x in per_request],
                "load_avg_1m": round(os.getloadavg()[0], 1),
            }
        ),
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--keys", type=int, default=200, help="enterprise keys to spread over")
    parser.add_argument("--database-url", default="")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/3")
    parser.add_argument("--strategies", default="moving-window,sliding-window-counter")
    parser.add_argument("--memory", action="store_true", help="also memory:// with 1 worker")
    parser.add_argument(
        "--in-process",
        type=int,
        default=0,
        metavar="BLOCKS",
        help="only the validation's CPU per request in-process, in this many blocks",
    )
    parser.add_argument(
        "--policies",
        action="store_true",
        help="every key with an IP allowlist, metadata, its own limit and a monthly quota",
    )
    parser.add_argument(
        "--table",
        action="store_true",
        help="issue 21's side-by-side table: ours, a bare no-op, the peer; servers compared",
    )
    parser.add_argument(
        "--limit-probe",
        action="store_true",
        help="only the per-key limit, Flask-Limiter's decorator vs charge (Redis)",
    )
    args = parser.parse_args()
    if not 1 <= args.duration <= 120 or not 1 <= args.rounds <= 10:
        raise SystemExit("duration must be 1-120 s and rounds 1-10")

    with tempfile.TemporaryDirectory(prefix="keyledger-bench-") as tmpdir:
        tmp = Path(tmpdir)
        env = {
            **os.environ,
            "KEYLEDGER_ENV": "development",
            "KEYLEDGER_INSTANCE": str(tmp / "instance"),
            "DATABASE_URL": args.database_url or f"sqlite:///{tmp / 'bench.db'}",
            "SECRET_KEY": "bench-secret",
            "KEY_PEPPER": "bench-pepper",
            "ARGON2_TIME_COST": "1",
            "ARGON2_MEMORY_COST": "8",
            "ARGON2_PARALLELISM": "1",
            # The real limits: load is spread over --keys enterprise keys (1200/minute each)
            # so every request is counted and the 200 path is what is measured.
            "TIER_RATE_LIMITS": "basic=60,premium=300,enterprise=1200",
            "RATELIMIT_KEY_PREFIX": f"bench-{os.getpid()}",
        }
        if args.table:  # SQLite, and PostgreSQL when --database-url names it
            import bench_sides

            bench_sides.table(args, env, tmp)
            return
        if args.database_url.startswith("postgresql"):
            from sqlalchemy import create_engine, text

            engine = create_engine(args.database_url)
            with engine.begin() as conn:
                conn.execute(text("DROP SCHEMA public CASCADE"))
                conn.execute(text("CREATE SCHEMA public"))
            engine.dispose()
        # Generate the instance secrets once, before several workers race to.
        run([sys.executable, "-c", "from app import create_app; create_app()"], env)
        if args.policies:
            env["MONTHLY_QUOTAS"] = POLICY_QUOTA
        keys = setup_database(env, args.keys, args.policies)
        print(
            json.dumps(
                {
                    "workers": args.workers,
                    "duration_s": args.duration,
                    "rounds": args.rounds,
                    "connections": args.connections,
                    "load": "wrk" if shutil.which("wrk") else "python",
                    "database": env["DATABASE_URL"].split("@")[-1],
                    "policies": args.policies,
                }
            ),
            flush=True,
        )
        if args.in_process:
            in_process({**env, "RATELIMIT_STORAGE_URI": args.redis}, keys, args.in_process)
            return
        if args.limit_probe:
            limit_probe({**env, "RATELIMIT_STORAGE_URI": args.redis}, keys, args, tmp)
            return
        for strategy in filter(None, args.strategies.split(",")):
            measure(
                {**env, "RATELIMIT_STORAGE_URI": args.redis, "RATELIMIT_STRATEGY": strategy},
                keys,
                args,
                tmp,
                f"redis {strategy}, {args.workers} workers",
            )
        if args.memory:
            one = argparse.Namespace(**{**vars(args), "workers": 1})
            measure(
                {**env, "RATELIMIT_STORAGE_URI": "memory://"}, keys, one, tmp, "memory://, 1 worker"
            )
        timing_parity(env, keys[0])


if __name__ == "__main__":
    main()
