"""scripts/bench_validate.py --table: issue 21's side-by-side run, one command, one table.

In one run, rounds interleaved (every target once per round, so the machine's other
load falls on all of them alike), with wrk at 8 and 64 connections:
- our validation under `make serve`'s server (python -m app.serve: Granian), Redis
  limits, on SQLite and on PostgreSQL (--database-url);
- a bare Flask no-op under the same server (Granian, the same workers);
- the peer, djangorestframework-api-key (scripts/bench_peer.py), under gunicorn sync
  and under Granian, same worker count, its own SQLite database;
- the portal's keys page (50 keys, signed in) at 8 connections;
- the servers compared for our app (gunicorn sync, gunicorn gthread, Granian): the
  validation, the keys page, and the slow-client test (60 trickling connections, then
  /healthz and a validation on fresh connections; tests/support/trickle.py).
Per target: requests/s and p99 (medians of rounds), and the workers' own CPU per request
(from /proc: steadier than requests/s on a shared machine). Load average and idle share
are printed with the table.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import bench_peer
from bench_validate import BIN, ROOT, Meter, free_port, idle_ticks, run, setup_database

sys.path.insert(0, str(ROOT / "tests"))
from support import trickle

LUA = """local reqs = {reqs}
local i = 0
request = function()
  i = i % #reqs + 1
  return wrk.format(reqs[i][1], reqs[i][2], reqs[i][3], reqs[i][4])
end
"""
PORTAL_USER = ("portal@example.com", "portal password 123")


class Served:
    """A server process on a free port, stopped (SIGTERM) on exit."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], cwd: Path, log: Path):
        self.name, self.argv, self.env, self.cwd, self.log = name, argv, env, cwd, log
        self.port = free_port()
        self.argv = [a.replace("{port}", str(self.port)) for a in argv]
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Served:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv, cwd=self.cwd, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.name} exited:\n{self.log.read_text()[-3000:]}")
            try:
                urllib.request.urlopen(self.url + "/", timeout=2).close()
                return self
            except urllib.error.HTTPError:
                return self  # it answers
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.2)
        self.__exit__()
        raise SystemExit(f"{self.name} did not start")

    def __exit__(self, *exc: Any) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def wrk(
    url: str, reqs: list[tuple[str, str, dict[str, str], str]], conns: int, secs: int, tmp: Path
) -> dict[str, Any]:
    script = tmp / "sides.lua"

    def lua(method: str, path: str, headers: dict[str, str], body: str) -> str:
        fields = ", ".join(f"[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items())
        lua_body = json.dumps(body) if body else "nil"
        return f"{{{json.dumps(method)}, {json.dumps(path)}, {{{fields}}}, {lua_body}}}"

    lua_reqs = ", ".join(lua(*r) for r in reqs)
    script.write_text(LUA.format(reqs="{" + lua_reqs + "}"))
    threads = min(conns, 2)
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{conns}", f"-d{secs}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        timeout=secs + 60,
    ).stdout
    m = re.search(r"\s99%\s+([\d.]+)(us|ms|s)\b", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "p99_ms": float(m.group(1)) * scale[m.group(2)] if m else float("nan"),
        "non_2xx": int(bad.group(1)) if bad else 0,
        "socket_errors": errors.group(1) if errors else "",
    }


def login_cookie(url: str) -> str:
    """The session cookie of PORTAL_USER, signed in through the login form."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    html = opener.open(url + "/login", timeout=10).read().decode()
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html).group(1)
    email, password = PORTAL_USER
    data = urllib.parse.urlencode({"csrf_token": token, "email": email, "password": password})
    opener.open(url + "/login", data=data.encode(), timeout=10).close()
    page = opener.open(url + "/keys", timeout=10)
    assert page.status == 200 and "/login" not in page.url, "sign-in failed"
    return "; ".join(f"{c.name}={c.value}" for c in jar)


def portal_keys(env: dict[str, str], n: int = 50) -> None:
    """PORTAL_USER with `n` keys (the keys page measured)."""
    code = (
        "from app import create_app, accounts\n"
        "from app.extensions import db\n"
        "from app.keys import lifecycle\n"
        "app = create_app()\n"
        "with app.app_context():\n"
        "    u = accounts.create_user(db.session, app.extensions['keyledger.passwords'],\n"
        f"        email={PORTAL_USER[0]!r}, password={PORTAL_USER[1]!r}, tier='premium')\n"
        f"    for i in range({n}):\n"
        "        lifecycle.create_key(db.session, app.extensions['keyledger.key_policy'],\n"
        "            u, name=f'portal{i}', scopes=['keys:read'], lifetime_days=30)\n"
    )
    run([sys.executable, "-c", code], env)


def slow_clients(server: Served, key: str) -> tuple[float, float]:
    """Seconds /healthz and a validation took with 60 trickling connections open
    (35 = no answer)."""
    with trickle.Trickle("127.0.0.1", server.port, n=60, every=0.2):
        time.sleep(1.0)
        h = trickle.timed_request("127.0.0.1", server.port, trickle.healthz("b"), 35)
        v = trickle.timed_request("127.0.0.1", server.port, trickle.validate("b", key), 35)
    return (h[1] if h[0] == 200 else 35.0), (v[1] if v[0] == 200 else 35.0)


def app_servers(workers: int) -> dict[str, list[str]]:
    """Our app under each server compared; "make serve" is what the README runs."""
    gunicorn = [str(BIN / "gunicorn"), "--bind", "127.0.0.1:{port}", "--workers", str(workers)]
    serve = [sys.executable, "-m", "app.serve", "--port", "{port}", "--workers", str(workers)]
    return {
        "make serve (Granian)": serve,
        # The thread count to weigh against the default on a quiet machine (the
        # slow-client test needs more than 8: docs/performance.md).
        "Granian, 32 threads": [*serve, "--threads", "32"],
        "gunicorn sync": [*gunicorn, "app:create_app()"],
        "gunicorn gthread (8 threads)": [
            *gunicorn,
            "-k",
            "gthread",
            "--threads",
            "8",
            "app:create_app()",
        ],
    }


def table(args: Any, base_env: dict[str, str], tmp: Path) -> None:
    """Everything above, printed as Markdown tables (and JSON lines as it goes)."""
    bench_peer.python()
    peer_root = tmp / "peer"
    peer_keys = bench_peer.make_project(peer_root, 200)
    peer_reqs = [("POST", "/check", {"Authorization": f"Api-Key {k}"}, "") for k in peer_keys]
    load0, idle0 = os.getloadavg(), idle_ticks()
    print(json.dumps({"peer": bench_peer.versions(), "load_avg_start": load0}), flush=True)
    dbs = [("SQLite", f"sqlite:///{tmp / 'sides.db'}")]
    if args.database_url:
        dbs.append(("PostgreSQL", args.database_url))
    rows: list[dict[str, Any]] = []
    w = args.workers
    bare = [
        str(BIN / "granian"),
        "--interface",
        "wsgi",
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
        "--workers",
        str(w),
        "--working-dir",
        str(ROOT / "scripts"),
        "--factory",
        "--log-level",
        "warning",
        "bench_validate:bare_app",
    ]
    for db_name, url in dbs:
        env = {**base_env, "DATABASE_URL": url, "RATELIMIT_STORAGE_URI": args.redis}
        env["RATELIMIT_KEY_PREFIX"] = f"sides-{os.getpid()}-{db_name}"
        if url.startswith("postgresql"):
            from sqlalchemy import create_engine, text

            engine = create_engine(url)
            with engine.begin() as conn:
                conn.execute(text("DROP SCHEMA public CASCADE"))
                conn.execute(text("CREATE SCHEMA public"))
            engine.dispose()
        run([sys.executable, "-c", "from app import create_app; create_app()"], env)
        keys = setup_database(env, max(args.keys, 1000))
        portal_keys(env)
        ours = [
            (
                "POST",
                "/api/v1/keys/validate",
                {"Content-Type": "application/json"},
                json.dumps({"key": k}),
            )
            for k in keys
        ]
        servers = {"ours": ("make serve (Granian)", app_servers(w)["make serve (Granian)"], env)}
        if db_name == "SQLite":
            servers["bare"] = ("Granian", bare, env)
            for peer in ("gunicorn", "granian"):
                argv, penv = bench_peer.command(peer, peer_root, "{port}", w)
                servers[f"peer {peer}"] = (
                    "gunicorn sync" if peer == "gunicorn" else "Granian",
                    argv,
                    penv,
                )
            for name, argv in app_servers(w).items():
                if not name.startswith("make serve"):
                    servers[f"ours {name}"] = (name, argv, env)
        started = {}
        for label, (_, argv, senv) in servers.items():
            started[label] = Served(label, argv, senv, ROOT, tmp / f"{label}.log").__enter__()
        try:
            cookie = {
                lab: login_cookie(s.url)
                for lab, s in started.items()
                if lab == "ours" or lab.startswith("ours ")
            }
            plan: list[tuple[str, str, int, list[Any]]] = []
            for conns in (8, 64):
                plan.append(("ours", "validation", conns, ours))
                if db_name == "SQLite":
                    plan.append(
                        ("bare", "bare Flask no-op", conns, [("POST", "/bench/noop", {}, "{}")])
                    )
                    plan.append(("peer gunicorn", "peer: HasAPIKey", conns, peer_reqs))
                    plan.append(("peer granian", "peer: HasAPIKey", conns, peer_reqs))
            for lab in cookie:
                plan.append(
                    (lab, "keys page (50 keys)", 8, [("GET", "/keys", {"Cookie": cookie[lab]}, "")])
                )
                if lab != "ours":
                    plan.append((lab, "validation", 8, ours))
            results: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
            for _ in range(args.rounds):
                for lab, what, conns, reqs in plan:
                    meter = Meter(started[lab].proc.pid)
                    r = wrk(started[lab].url, reqs, conns, args.duration, tmp)
                    r.update(meter.per_request(max(1, r["requests"])))
                    results.setdefault((lab, what, conns), []).append(r)
                    print(
                        json.dumps(
                            {
                                "db": db_name,
                                "target": lab,
                                "what": what,
                                "conns": conns,
                                **r,
                                "load": os.getloadavg()[0],
                            }
                        ),
                        flush=True,
                    )
            slow = {}
            if db_name == "SQLite":
                for lab in cookie:
                    slow[lab] = slow_clients(started[lab], keys[0])
        finally:
            for s in started.values():
                s.__exit__()
        for (lab, what, conns), rs in results.items():
            rows.append(
                {
                    "db": db_name,
                    "target": lab,
                    "server": servers[lab][0],
                    "what": what,
                    "conns": conns,
                    "rps": statistics.median(r["rps"] for r in rs),
                    "p99_ms": statistics.median(r["p99_ms"] for r in rs),
                    "cpu_us": statistics.median(r["workers"] for r in rs) * 1e6,
                    "idle": statistics.median(r["idle"] for r in rs),
                    "non_2xx": sum(r["non_2xx"] for r in rs),
                    "slow": slow.get(lab) if what == "validation" and conns == 8 else None,
                }
            )
    t1, i1 = idle_ticks()
    report(rows, args, load0, os.getloadavg(), (i1 - idle0[1]) / max(1, t1 - idle0[0]))


def report(rows: list[dict[str, Any]], args: Any, load0: Any, load1: Any, idle: float) -> None:
    def find(db: str, target: str, what: str, conns: int) -> dict[str, Any] | None:
        for r in rows:
            if (r["db"], r["target"], r["what"], r["conns"]) == (db, target, what, conns):
                return r
        return None

    print(
        f"\n{args.workers} workers per server, wrk, {args.rounds} rounds of {args.duration} s, "
        f"interleaved; Redis limits ({args.redis})."
    )
    print(
        f"Load average at start {load0[0]:.2f} / {load0[1]:.2f}, at end {load1[0]:.2f} / "
        f"{load1[1]:.2f} (1 / 5 min); machine idle {100 * idle:.0f} % over the run.\n"
    )
    print("| database | target | server | conns | req/s | p99 ms | worker CPU µs/req ", end="")
    print("| idle % | non-2xx |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        if r["target"].startswith("ours ") and r["target"] != "ours":
            continue
        print(
            f"| {r['db']} | {r['what']} | {r['server']} | {r['conns']} | {r['rps']:,.0f} | "
            f"{r['p99_ms']:.1f} | {r['cpu_us']:.0f} | {100 * r['idle']:.0f} | {r['non_2xx']} |"
        )
    print(
        "\nServers compared for our app (SQLite, Redis limits, 8 connections; slow clients:"
        " 60 trickling connections open, seconds to answer, 35 = none):\n"
    )
    print("| server | validation req/s | p99 ms | CPU µs/req | keys page req/s | p99 ms ", end="")
    print("| /healthz s | validation s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for target in ["ours", *sorted({r["target"] for r in rows if r["target"].startswith("ours ")})]:
        v, p = (
            find("SQLite", target, "validation", 8),
            find("SQLite", target, "keys page (50 keys)", 8),
        )
        if not v or not p:
            continue
        slow = v["slow"] or (float("nan"), float("nan"))
        print(
            f"| {v['server']} | {v['rps']:,.0f} | {v['p99_ms']:.1f} | {v['cpu_us']:.0f} | "
            f"{p['rps']:,.0f} | {p['p99_ms']:.1f} | {slow[0]:.3f} | {slow[1]:.3f} |"
        )
    print("\nGoals (issue 21):\n")
    for conns in (8, 64):
        ours = find("SQLite", "ours", "validation", conns)
        peers = [
            find("SQLite", t, "peer: HasAPIKey", conns) for t in ("peer gunicorn", "peer granian")
        ]
        bare = find("SQLite", "bare", "bare Flask no-op", conns)
        if ours and all(peers) and bare:
            best = max(p["rps"] for p in peers)  # type: ignore[index]
            print(
                f"- {conns} connections: ours / peer's faster server = "
                f"{ours['rps'] / best:.2f}x (goal >= 4); ours / bare no-op = "
                f"{ours['rps'] / bare['rps']:.2f} (goal >= 0.45); by worker CPU: "
                f"peer's best {min(p['cpu_us'] for p in peers) / ours['cpu_us']:.2f}x ours, "  # type: ignore[index]
                f"bare {bare['cpu_us'] / ours['cpu_us']:.2f} of ours"
            )
    for db in ("SQLite", "PostgreSQL"):
        for conns, goal in ((8, 10), (64, 40)):
            r = find(db, "ours", "validation", conns)
            if r:
                p99 = r["p99_ms"]
                print(f"- {db}, {conns} connections: validation p99 {p99:.1f} ms (goal <= {goal})")
        r = find(db, "ours", "keys page (50 keys)", 8)
        if r:
            print(f"- {db}: keys page p99 {r['p99_ms']:.1f} ms at 8 connections (goal <= 50)")
