"""Mixed load against the README's server (app/serve.py), then an audit of what it left behind.

    .venv/bin/python scripts/load.py [--workers 4] [--clients 16] [--duration 60]
        [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/kl_load]
        [--redis redis://127.0.0.1:6379/7]

Not a timed test: a script whose figures go to docs/reliability.md. It migrates a
fresh database (SQLite in a temporary folder unless --database-url), makes keys
through the app, starts `python -m app.serve` (`--workers`, Redis limits) and
runs `--clients` threads for `--duration` seconds:

- most clients validate: live enterprise keys (never limited), two basic-tier "hot"
  keys pushed far past their 60/minute, unknown keys, and keys revoked meanwhile;
- some create keys with the management API, others revoke what was created.

Then it stops the server with SIGTERM (which flushes every worker's queue) and checks:
zero 5xx; one usage event per answer about an identified key; one audit event per
creation, revocation and failed validation; each hot key answered 200 exactly
min(limit, tries) times; `flask audit verify` passes. It prints p50/p95/p99 per kind
of request and exits 1 when any check fails.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
HOT_LIMIT = 60  # basic tier, per minute


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(cmd: list[str], env: dict[str, str], stdin: str | None = None) -> str:
    done = subprocess.run(
        cmd, cwd=ROOT, env=env, input=stdin, capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


SETUP = """
import json
from app import create_app, accounts
from app.extensions import db
from app.keys import lifecycle
app = create_app()
out = {}
with app.app_context():
    pw = app.extensions['keyledger.passwords']
    policy = app.extensions['keyledger.key_policy']
    big = accounts.create_user(db.session, pw, email='load@example.com',
        password='load password 123', tier='enterprise')
    small = accounts.create_user(db.session, pw, email='hot@example.com',
        password='load password 123', tier='basic')
    def key(owner, name, scopes=('keys:read',)):
        return lifecycle.create_key(db.session, policy, owner, name=name,
            scopes=list(scopes), lifetime_days=30).plaintext
    out['live'] = [key(big, f'live{i}') for i in range(N_LIVE)]
    out['hot'] = [key(small, f'hot{i}') for i in range(2)]
    out['managers'] = [key(big, f'manager{i}', ('keys:read', 'keys:write'))
        for i in range(N_MANAGERS)]
print(json.dumps(out))
"""


class Results:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.status: Counter[tuple[str, int]] = Counter()
        self.identified = 0  # answers carrying X-RateLimit-*: one usage event each
        self.hot_ok: Counter[str] = Counter()
        self.hot_tries: Counter[str] = Counter()
        self.hot_span: dict[str, list[float]] = {}
        self.created: list[str] = []
        self.revoked_changed = 0
        self.failed_validations = 0  # 401/403 on validate: one audit event each
        self.errors: list[str] = []

    def add(self, kind: str, status: int, seconds: float, headers: dict[str, str]) -> None:
        with self.lock:
            self.latency[kind].append(seconds)
            self.status[(kind, status)] += 1
            if "x-ratelimit-limit" in headers:
                self.identified += 1
            if kind.startswith("validate") and status in (401, 403):
                self.failed_validations += 1


def request(
    conn: http.client.HTTPConnection, path: str, body: dict[str, Any], headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes, float]:
    data = json.dumps(body).encode()
    started = time.perf_counter()
    conn.request("POST", path, body=data, headers={"Content-Type": "application/json", **headers})
    resp = conn.getresponse()
    payload = resp.read()
    return (
        resp.status,
        {k.lower(): v for k, v in resp.getheaders()},
        payload,
        time.perf_counter() - started,
    )


def client(
    role: str, port: int, keys: dict[str, list[str]], stop_at: float, res: Results, seed: int
) -> None:
    rnd = random.Random(seed)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    manager = keys["managers"][seed % len(keys["managers"])]
    hot_until = stop_at - 1.5  # the hot keys' traffic stays inside one 60 s window
    while time.monotonic() < stop_at:
        try:
            if role == "create":
                status, headers, payload, took = request(
                    conn,
                    "/api/v1/keys",
                    {"name": f"made-{seed}-{rnd.randrange(10**9)}", "scopes": ["keys:read"]},
                    {"Authorization": f"Bearer {manager}"},
                )
                res.add("create", status, took, headers)
                if status == 201:
                    made = json.loads(payload)
                    with res.lock:
                        res.created.append(made["key"])
                continue
            if role == "revoke":
                with res.lock:
                    target = res.created.pop(0) if len(res.created) > 4 else None
                if target is None:
                    time.sleep(0.05)
                    continue
                public_id = target.split(".")[1]
                status, headers, payload, took = request(
                    conn,
                    f"/api/v1/keys/{public_id}/revoke",
                    {},
                    {"Authorization": f"Bearer {manager}"},
                )
                res.add("revoke", status, took, headers)
                if status == 200 and json.loads(payload).get("changed"):
                    with res.lock:
                        res.revoked_changed += 1
                        keys.setdefault("revoked", []).append(target)
                continue
            pick = rnd.random()
            now = time.monotonic()
            if pick < 0.15 and now < hot_until:
                key, kind = rnd.choice(keys["hot"]), "validate_hot"
            elif pick < 0.20:
                key, kind = "klk.AAAAAAAAAAAA.not-a-key", "validate_bad"
            elif pick < 0.25 and keys.get("revoked"):
                key, kind = rnd.choice(keys["revoked"]), "validate_revoked"
            else:
                key, kind = rnd.choice(keys["live"]), "validate"
            status, headers, _, took = request(
                conn,
                "/api/v1/keys/validate",
                {
                    "key": key,
                    "request": {"method": "GET", "path": f"/v1/items/{rnd.randrange(99)}"},
                },
                {"X-Forwarded-For": f"198.51.100.{seed}"},
            )
            res.add(kind, status, took, headers)
            if kind == "validate_hot":
                with res.lock:
                    res.hot_tries[key] += 1
            if kind == "validate_hot" and status == 200:
                with res.lock:
                    res.hot_ok[key] += 1
                    span = res.hot_span.setdefault(key, [now, now])
                    span[1] = now
        except (OSError, http.client.HTTPException, ValueError) as exc:
            with res.lock:
                res.errors.append(f"{role}: {type(exc).__name__}: {exc}")
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.close()


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def count(env: dict[str, str], sql: str) -> int:
    code = (
        "from sqlalchemy import text\nfrom app import create_app\n"
        "from app.extensions import db\napp = create_app()\n"
        f"with app.app_context():\n    print(db.session.execute(text({sql!r})).scalar())\n"
    )
    return int(run([sys.executable, "-c", code], env).strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/7")
    args = parser.parse_args()
    if not 5 <= args.duration <= 60:
        raise SystemExit("duration must be 5-60 s (the hot keys' check needs one window)")

    with tempfile.TemporaryDirectory(prefix="keyledger-load-") as tmpdir:
        tmp = Path(tmpdir)
        env = {
            **os.environ,
            "KEYLEDGER_ENV": "development",
            "KEYLEDGER_INSTANCE": str(tmp / "instance"),
            "DATABASE_URL": args.database_url or f"sqlite:///{tmp / 'load.db'}",
            "RATELIMIT_STORAGE_URI": args.redis,
            "RATELIMIT_KEY_PREFIX": f"load-{os.getpid()}-{int(time.time())}",
            "PROXY_FIX_HOPS": "1",  # each client thread its own address (X-Forwarded-For)
            "FAILED_VALIDATION_LIMIT": "100000/minute",  # bad keys are part of the mix
            "ARGON2_TIME_COST": "1",
            "ARGON2_MEMORY_COST": "8192",
            "ARGON2_PARALLELISM": "1",
            "WEB_CONCURRENCY": str(args.workers),
            "LOG_FORMAT": "json",
            "PYTHONUNBUFFERED": "1",
        }
        if args.database_url.startswith("postgresql"):
            reset = (
                "from sqlalchemy import create_engine, text\n"
                f"e = create_engine({args.database_url!r})\n"
                "with e.begin() as c:\n"
                "    c.execute(text('DROP SCHEMA public CASCADE'))\n"
                "    c.execute(text('CREATE SCHEMA public'))\n"
            )
            run([sys.executable, "-c", reset], env)
        run([str(BIN / "flask"), "--app", "app", "db", "upgrade"], env)
        setup = SETUP.replace("N_LIVE", "40").replace("N_MANAGERS", "4")
        keys = json.loads(run([sys.executable, "-c", setup], env).strip().splitlines()[-1])
        before = {
            "usage": count(env, "SELECT COUNT(*) FROM usage_event"),
            "created": count(env, "SELECT COUNT(*) FROM audit_event WHERE action='key.created'"),
        }

        port = free_port()
        log = tmp / "server.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "app.serve", "--port", str(port)],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1):
                        break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit(f"the server did not start:\n{log.read_text()}") from None
                    time.sleep(0.2)
            load_before = os.getloadavg()
            res = Results()
            roles = ["create"] * 2 + ["revoke"] * 2
            roles += ["validate"] * max(0, args.clients - len(roles))
            started = time.monotonic()
            stop_at = started + args.duration
            threads = [
                threading.Thread(target=client, args=(role, port, keys, stop_at, res, i))
                for i, role in enumerate(roles)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.monotonic() - started
            load_after = os.getloadavg()
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

        usage = count(env, "SELECT COUNT(*) FROM usage_event") - before["usage"]
        created = (
            count(env, "SELECT COUNT(*) FROM audit_event WHERE action='key.created'")
            - before["created"]
        )
        revoked = count(env, "SELECT COUNT(*) FROM audit_event WHERE action='key.revoked'")
        failed = count(env, "SELECT COUNT(*) FROM audit_event WHERE action='key.validation_failed'")
        verify = subprocess.run(
            [str(BIN / "flask"), "--app", "app", "audit", "verify"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip

    total = sum(res.status.values())
    five = {k: v for k, v in res.status.items() if k[1] >= 500}
    creations = res.status[("create", 201)]
    checks = {
        "zero 5xx": not five,
        "no client errors": not res.errors,
        "usage events = identified answers": usage == res.identified,
        "key.created events = creations": created == creations,
        "key.revoked events = revocations": revoked == res.revoked_changed,
        "key.validation_failed events = 401/403 answers": failed == res.failed_validations,
        # Every try answered 200 up to the limit, then none (all tries fit one window).
        "hot keys: exactly min(limit, tries) answered 200": all(
            res.hot_ok[k] == min(HOT_LIMIT, res.hot_tries[k]) for k in keys["hot"]
        ),
        "audit verify": verify.returncode == 0,
    }
    report = {
        "workers": args.workers,
        "clients": args.clients,
        "duration_s": round(elapsed, 1),
        "database": env["DATABASE_URL"].split(":")[0],
        "requests": total,
        "rps": round(total / elapsed, 1),
        "load_avg_before_after": [round(load_before[0], 1), round(load_after[0], 1)],
        "status": {f"{k} {s}": n for (k, s), n in sorted(res.status.items())},
        "latency_ms": {
            kind: {
                "n": len(v),
                "p50": round(pct(v, 0.50), 1),
                "p95": round(pct(v, 0.95), 1),
                "p99": round(pct(v, 0.99), 1),
                "mean": round(statistics.fmean(v) * 1000, 1),
            }
            for kind, v in sorted(res.latency.items())
        },
        "usage_events": [usage, res.identified],
        "key_created": [created, creations],
        "key_revoked": [revoked, res.revoked_changed],
        "validation_failed": [failed, res.failed_validations],
        "hot_key_200s_of_tries": {
            k.split(".")[1]: [res.hot_ok[k], res.hot_tries[k]] for k in keys["hot"]
        },
        "hot_key_span_s": {k.split(".")[1]: round(s[1] - s[0], 1) for k, s in res.hot_span.items()},
        "verify": (verify.stdout.strip().splitlines() or [""])[-1][:200],
        "errors": res.errors[:5],
        "checks": checks,
    }
    print(json.dumps(report, indent=1))
    sys.exit(0 if all(checks.values()) else 1)


if __name__ == "__main__":
    main()
