"""CPU per GET /keys (the portal's keys list, 50 keys, signed in), in-process through
the Flask test client: issue 21's portal page, without a server or a load generator.

    .venv/bin/python scripts/bench_keys_page.py [--blocks 5] [--size 200] [--keys 50]
        [--database-url postgresql+psycopg://...] [--profile out.prof] [--render]
    valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.%p .venv/bin/python \
        scripts/bench_keys_page.py --count 50 --callgrind
    # the dump after the count: its "summary:" line / 50 = instructions per page

It migrates a fresh database (a temporary SQLite file, or the PostgreSQL database given,
emptied), makes one user with `--keys` keys through the app, signs in through the
login form and fetches the page in blocks: the request thread's CPU per page
(`time.thread_time`, which waiting on the database does not count), median of blocks.
`--render` also reports the share spent in `render_template`. The page must answer 200
with every key on it, or the script stops.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_validate_cost import tell_callgrind  # noqa: E402

EMAIL, PASSWORD = "portal@example.com", "portal password 123"


def make_app(url: str, tmp: Path, callgrind: bool) -> Any:
    from app import create_app

    config: dict[str, Any] = {
        "SQLALCHEMY_DATABASE_URI": url,
        "INSTANCE_PATH": str(tmp),
        "SECRET_KEY": "bench",
        "KEY_PEPPER": "bench",
        "RATELIMIT_STORAGE_URI": "memory://",
        "LOGIN_RATE_LIMIT": "100000/minute",
        "ARGON2_TIME_COST": 1,
        "ARGON2_MEMORY_COST": 8,
        "ARGON2_PARALLELISM": 1,
    }
    if callgrind:  # the clock-driven threads would land in the count (see bench_validate_cost)
        config.update(
            USAGE_MODE="manual",
            AUDIT_SEALER=False,
            WEBHOOK_DISPATCHER=False,
            METRICS_SAMPLE_INTERVAL=3600.0,
        )
    return create_app(config)


def fill(app: Any, n: int) -> None:
    """A fresh schema, one user, `n` keys (as scripts/bench_sides.py's portal_keys)."""
    from flask_migrate import upgrade
    from sqlalchemy import text

    from app import accounts
    from app.extensions import db
    from app.keys import lifecycle
    from app.web import passwords

    with app.app_context():
        if db.engine.dialect.name == "postgresql":
            with db.engine.begin() as conn:
                conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        upgrade(directory=str(ROOT / "migrations"))
        user = accounts.create_user(
            db.session, passwords(), email=EMAIL, password=PASSWORD, actor_ip=None
        )
        policy = app.extensions["keyledger.key_policy"]
        for i in range(n):
            lifecycle.create_key(
                db.session, policy, user, name=f"portal{i}", scopes=["keys:read"], lifetime_days=30
            )
        db.session.commit()


def signed_in(app: Any, n: int) -> Any:
    """A test client signed in through the login form, its keys page checked."""
    client = app.test_client()
    html = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html)
    data = {"email": EMAIL, "password": PASSWORD, "csrf_token": token.group(1) if token else ""}
    answer = client.post("/login", data=data)
    if answer.status_code not in (302, 303):
        raise SystemExit(f"sign-in answered {answer.status_code}")
    page = client.get("/keys")
    body = page.get_data(as_text=True)
    if page.status_code != 200 or any(f">portal{i}<" not in body for i in range(n)):
        raise SystemExit(f"/keys answered {page.status_code} without every key")
    return client


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--blocks", type=int, default=5)
    parser.add_argument("--size", type=int, default=200, help="pages per block")
    parser.add_argument("--keys", type=int, default=50)
    parser.add_argument("--database-url")
    parser.add_argument("--profile", help="write a cProfile of the blocks to this file")
    parser.add_argument("--render", action="store_true", help="also time render_template")
    parser.add_argument("--count", type=int, help="only N pages after warming")
    parser.add_argument(
        "--callgrind",
        action="store_true",
        help="with --count, under valgrind --tool=callgrind: zero the counters before "
        "the count and dump after it",
    )
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="kl-keys-page-"))
    try:
        url = args.database_url or f"sqlite:///{tmp / 'keys.db'}"
        app = make_app(url, tmp, args.callgrind)
        fill(app, args.keys)
        client = signed_in(app, args.keys)
        for _ in range(20):  # warm: templates compiled, statements cached
            client.get("/keys")
        if args.count:
            callgrind = shutil.which("callgrind_control") if args.callgrind else None
            if callgrind:
                tell_callgrind(callgrind, "--zero")
            for _ in range(args.count):
                client.get("/keys")
            if callgrind:
                tell_callgrind(callgrind, "--dump")
            return
        rendering = [0.0]
        if args.render:
            import flask.templating

            real = flask.templating._render

            def timed(*a: Any, **k: Any) -> str:
                t0 = time.thread_time()
                try:
                    return real(*a, **k)
                finally:
                    rendering[0] += time.thread_time() - t0

            flask.templating._render = timed
        profiler = None
        if args.profile:
            import cProfile

            profiler = cProfile.Profile()
        pages, renders = [], []
        for _ in range(args.blocks):
            rendering[0] = 0.0
            if profiler:
                profiler.enable()
            t0 = time.thread_time()
            for _ in range(args.size):
                client.get("/keys")
            t1 = time.thread_time()
            if profiler:
                profiler.disable()
            pages.append((t1 - t0) / args.size * 1e3)
            renders.append(rendering[0] / args.size * 1e3)
        if profiler:
            profiler.dump_stats(args.profile)
        result: dict[str, Any] = {
            "database": "postgresql" if args.database_url else "sqlite",
            "keys": args.keys,
            "blocks": f"{args.blocks} x {args.size}",
            "page_cpu_ms": round(statistics.median(pages), 2),
            "page_cpu_ms_blocks": [round(p, 2) for p in pages],
        }
        if args.render:
            result["render_cpu_ms"] = round(statistics.median(renders), 2)
        result["load_avg_1m"] = round(os.getloadavg()[0], 1)
        print(json.dumps(result), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
