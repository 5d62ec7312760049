"""Server time of the dashboard, the key page and their JSON/CSV answers over a big usage table.

    .venv/bin/python scripts/bench_dashboard.py                       # SQLite, 1,000,000 events
    .venv/bin/python scripts/bench_dashboard.py --db postgresql+psycopg://postgres@127.0.0.1/DB
    .venv/bin/python scripts/bench_dashboard.py --db sqlite:////tmp/b.db --reuse   # measure only

Fills a database (migrated from empty; PostgreSQL: the schema is dropped first) with
--users users owning --keys keys and --events usage events over --days days, written
through the app's usage recorder (raw events, roll-ups, top roll-ups, last use) plus
--failures refused validations on the audit trail. Key popularity follows a Zipf law,
so the first user's keys carry a large share of all traffic: the measured user and key
are the heaviest ones. Then every page and JSON/CSV answer of the user side is fetched
--rounds times through the Flask test client (no network: server time), and the
median and max are printed. docs/performance.md records runs.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PASSWORD = "bench password long enough"
ENDPOINTS = [f"/v1/{r}" for r in ("orders", "invoices", "customers", "refunds", "search")]
ENDPOINTS += [f"/v1/orders/{i}" for i in range(40)]  # some cardinality, as real paths have
STATUSES = [200] * 86 + [201] * 4 + [404] * 3 + [401, 403] + [429] * 2 + [500, 503]


def make_app(url: str, tmp: Path):
    from app import create_app

    return create_app(
        {
            "SQLALCHEMY_DATABASE_URI": url,
            "INSTANCE_PATH": str(tmp),
            "SECRET_KEY": "bench",
            "KEY_PEPPER": "bench",
            "RATELIMIT_STORAGE_URI": "memory://",
            "USAGE_MODE": "manual",
            "USAGE_BATCH_MAX": 20_000,
            "USAGE_QUEUE_MAX": 1_000_000,
            "LOGIN_RATE_LIMIT": "100000/minute",
            "ARGON2_TIME_COST": 1,
            "ARGON2_MEMORY_COST": 8,
            "ARGON2_PARALLELISM": 1,
            "WTF_CSRF_ENABLED": True,
        }
    )


def fill(app, args) -> None:
    from flask_migrate import upgrade
    from sqlalchemy import insert, text

    from app import accounts
    from app.extensions import db
    from app.models import ApiKey, User
    from app.usage import UsageEvent, recorder
    from app.web import passwords

    with app.app_context():
        if db.engine.dialect.name == "postgresql":
            with db.engine.begin() as conn:
                conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        upgrade()
        accounts.create_user(
            db.session, passwords(), email="heavy@example.com", password=PASSWORD, actor_ip=None
        )
        db.session.commit()
        now = datetime.now(UTC)
        db.session.execute(
            insert(User),
            [
                {"email": f"user{i}@example.com", "password_hash": "x", "created_at": now}
                for i in range(1, args.users)
            ],
        )
        db.session.commit()
        user_ids = [u for (u,) in db.session.execute(text('SELECT id FROM "user" ORDER BY id'))]
        per_user = max(1, args.keys // len(user_ids))
        rows = []
        for i in range(args.keys):
            rows.append(
                {
                    "public_id": f"bench{i:07d}",
                    "prefix": "klk",
                    "secret_hash": os.urandom(32),
                    "user_id": user_ids[min(i // per_user, len(user_ids) - 1)],
                    "name": f"service {i}",
                    "scopes": ["keys:read"],
                    "created_at": now - timedelta(days=args.days + 5),
                    "expires_at": now + timedelta(days=(i % 40) + 1),
                }
            )
        db.session.execute(insert(ApiKey), rows)
        db.session.commit()
        keys = db.session.execute(
            text("SELECT id, user_id, public_id FROM api_key ORDER BY id")
        ).all()
    rng = random.Random(1)
    weights = [1 / (r + 1) ** 1.1 for r in range(len(keys))]
    ips = [f"203.0.113.{i}" for i in range(60)] + [f"2001:db8::{i:x}" for i in range(20)]
    rec = recorder(app)
    span = args.days * 86400
    started = time.perf_counter()
    chunk = 20_000
    done = 0
    while done < args.events:
        n = min(chunk, args.events - done)
        picked = rng.choices(keys, weights, k=n)
        for key_id, owner_id, _ in picked:
            rec.record(
                UsageEvent(
                    key_id=key_id,
                    owner_id=owner_id,
                    endpoint=rng.choice(ENDPOINTS),
                    method="GET",
                    status=rng.choice(STATUSES),
                    response_ms=rng.lognormvariate(2.5, 0.8),
                    client_ip=rng.choice(ips),
                    at=now - timedelta(seconds=rng.random() * span),
                )
            )
        rec.flush()
        done += n
        rate = done / (time.perf_counter() - started)
        print(f"\r  {done:>10,} events recorded ({rate:,.0f}/s)", end="", flush=True)
    print()
    for i in range(args.failures):
        _, _, public_id = rng.choices(keys, weights)[0]
        rec.audit(
            "key.validation_failed",
            actor=f"key:{public_id}",
            actor_ip=rng.choice(ips),
            target=f"key:{public_id}",
            outcome="failure",
            details={"error": rng.choice(["revoked", "expired", "insufficient_scope"])},
            at=now - timedelta(seconds=rng.random() * span),
        )
        if i % 5000 == 4999:
            rec.flush()
    rec.flush()
    with app.app_context():
        if db.engine.dialect.name == "postgresql":
            with db.engine.begin() as conn:
                conn.execute(text("ANALYZE"))
        else:
            with db.engine.begin() as conn:
                conn.execute(text("ANALYZE"))


def measure(
    app, rounds: int, email: str = "heavy@example.com", password: str = PASSWORD
) -> list[tuple[str, float, float, int]]:
    from sqlalchemy import text

    from app.extensions import db

    client = app.test_client()
    html = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html).group(1)
    resp = client.post("/login", data={"csrf_token": token, "email": email, "password": password})
    assert resp.status_code == 302, resp.get_data(as_text=True)[:500]
    with app.app_context():
        key, n = db.session.execute(
            text(
                "SELECT k.public_id, count(*) FROM usage_event e JOIN api_key k ON k.id = e.key_id"
                ' WHERE k.user_id = (SELECT id FROM "user" WHERE email = :email)'
                " GROUP BY k.public_id ORDER BY count(*) DESC LIMIT 1"
            ),
            {"email": email},
        ).one()
        total = db.session.execute(text("SELECT count(*) FROM usage_event")).scalar_one()
        mine = db.session.execute(
            text(
                "SELECT count(*) FROM usage_event WHERE owner_id ="
                ' (SELECT id FROM "user" WHERE email = :email)'
            ),
            {"email": email},
        ).scalar_one()
    print(f"  {total:,} events; the measured user has {mine:,}, the measured key {key} {n:,}")
    urls = ["/dashboard"]
    for r in ("hour", "day", "week", "month"):
        urls.append(f"/dashboard/usage.json?range={r}")
    urls.append("/dashboard/usage.csv?chart=series&range=month")
    urls.append(f"/keys/{key}")
    for r in ("hour", "day", "week", "month"):
        urls.append(f"/keys/{key}/usage.json?range={r}")
    day_ago = (datetime.now(UTC) - timedelta(days=29)).strftime("%Y-%m-%dT%H:%M")
    urls.append(
        f"/keys/{key}/usage.json?from={day_ago}&to=" + datetime.now(UTC).strftime("%Y-%m-%dT%H:%M")
    )
    urls.append(f"/keys/{key}/usage.csv?chart=endpoints&range=month")
    for status in ("5xx", "401/403", "3xx"):
        urls.append(f"/keys/{key}?log_status={status}")
    out = []
    for url in urls:
        times = []
        for _ in range(rounds):
            t = time.perf_counter()
            resp = client.get(url)
            times.append((time.perf_counter() - t) * 1000)
            assert resp.status_code == 200, (url, resp.status_code)
        out.append((url, statistics.median(times), max(times), len(resp.data)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", help="database URL (default: a new SQLite file in /tmp)")
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--days", type=float, default=30)
    parser.add_argument("--failures", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--reuse", action="store_true", help="measure an already filled --db")
    parser.add_argument(
        "--login",
        nargs=2,
        metavar=("EMAIL", "PASSWORD"),
        default=("heavy@example.com", PASSWORD),
        help="the account measured (e.g. a `flask demo seed` one)",
    )
    parser.add_argument(
        "--fill-only", action="store_true", help="only fill: the recorder's flush rate"
    )
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-dashboard-"))
    url = args.db or f"sqlite:///{tmp / 'bench.db'}"
    app = make_app(url, tmp)
    print(f"database: {url.split('@')[-1]}; load average {os.getloadavg()[0]:.1f}")
    if not args.reuse:
        started = time.perf_counter()
        fill(app, args)
        print(f"  filled in {time.perf_counter() - started:.0f} s")
    if args.fill_only:
        return
    print(f"  load average {os.getloadavg()[0]:.1f} before measuring")
    print(f"{'answer':<62} {'median ms':>9} {'max ms':>8} {'bytes':>8}")
    for url, med, worst, size in measure(app, args.rounds, *args.login):
        print(f"{url[:62]:<62} {med:>9.1f} {worst:>8.1f} {size:>8,}")
    print(f"  load average {os.getloadavg()[0]:.1f} after")


if __name__ == "__main__":
    main()
