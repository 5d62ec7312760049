"""Server time of the admin dashboard pages, their chart JSON and the billing pages.

    # a database with traffic first (minutes for a million events):
    DATABASE_URL=... flask --app app demo seed --users 100 --keys 1000 --events 1000000
    DATABASE_URL=... .venv/bin/python scripts/bench_dashboard_admin.py [--rounds 15]

Runs the real app on the database DATABASE_URL names, as the first demo account made
admin, and times each GET through the Flask test client (the whole request: routing,
login, queries, template or JSON; no network), after two warm-up requests. Prints the
median and the slowest of the rounds per URL, the first request's time (the one that
writes the billing snapshot of closed days still missing), and the row counts it ran
against, the billing snapshot's included; `--drop-snapshot` empties the snapshot first,
so that the first billing request shows the cost of writing it. docs/performance.md
records the runs. A benchmark, not a test: the machine is shared.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CHARTS = (
    "requests",
    "error_rate",
    "keys",
    "top_keys",
    "top_users",
    "tier_mix",
    "failures",
    "failure_ips",
    "incidents",
    "failing_users",
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--days", type=int, default=30, choices=(7, 30, 90))
    parser.add_argument("--exports", action="store_true", help="also time the billing downloads")
    parser.add_argument("--only", default="", help="time only the URLs containing this text")
    parser.add_argument(
        "--drop-snapshot",
        action="store_true",
        help="delete the billing day snapshot first (the first billing request rewrites it)",
    )
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL"):
        sys.exit("set DATABASE_URL to a seeded database (flask demo seed)")

    from sqlalchemy import select, text

    from app import create_app
    from app.extensions import db
    from app.models import User

    app = create_app({"USAGE_MODE": "manual", "AUDIT_SEALER": False})
    with app.app_context():
        admin = db.session.scalar(select(User).order_by(User.id).limit(1))
        if admin is None:
            sys.exit("no accounts: run flask demo seed first")
        admin.is_admin = True
        if args.drop_snapshot:
            db.session.execute(text("DELETE FROM billing_day_closed"))
            db.session.execute(text("DELETE FROM billing_day"))
        db.session.commit()
        admin_id = admin.id
        tables = ("usage_event", "usage_rollup", "audit_event", "api_key", '"user"')
        counts = {
            t: db.session.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one()
            for t in (*tables, "billing_day", "billing_day_closed")
        }
        by_granularity = dict(
            db.session.execute(
                text("SELECT granularity, COUNT(*) FROM usage_rollup GROUP BY granularity")
            ).all()
        )
    print(f"database: {app.config['SQLALCHEMY_DATABASE_URI'].split('@')[-1]}")
    print(f"rows: {counts}; roll-ups by granularity: {by_granularity}")

    client = app.test_client()
    with client.session_transaction() as session:
        session["_user_id"] = str(admin_id)
        session["_fresh"] = True

    d = args.days
    from app.models._types import utcnow
    from app.times import recent_months

    last_month = recent_months(utcnow(), 2)[1]
    urls = [f"/admin/?days={d}", f"/admin/security?days={d}", "/admin/billing"]
    urls += [f"/admin/billing?month={last_month}", "/billing"]
    urls += [f"/admin/charts/{c}.json?days={d}" for c in CHARTS]
    urls += [f"/admin/charts/{c}.csv?days={d}" for c in ("requests", "failures")]
    if args.exports:
        urls += [
            f"/admin/billing/export.{f}?month={last_month}" for f in ("csv", "json", "cloudevents")
        ]
    urls = [u for u in urls if args.only in u]
    print(f"{'url':<44} {'median ms':>10} {'max ms':>9} {'first ms':>9} {'bytes':>9}")
    worst = 0.0
    for url in urls:
        times = []
        size = 0
        first = 0.0
        for i in range(args.rounds + 2):
            started = time.perf_counter()
            resp = client.get(url)
            body = resp.get_data()
            elapsed = (time.perf_counter() - started) * 1000
            if resp.status_code != 200:
                sys.exit(f"{url}: HTTP {resp.status_code}")
            size = len(body)
            if i == 0:
                first = elapsed
            if i >= 2:
                times.append(elapsed)
        med = statistics.median(times)
        worst = max(worst, med)
        print(f"{url:<44} {med:>10.1f} {max(times):>9.1f} {first:>9.1f} {size:>9}")
    with app.app_context():
        days = db.session.execute(text("SELECT COUNT(*) FROM billing_day_closed")).scalar_one()
    print(f"slowest median: {worst:.1f} ms; billing snapshot after the run: {days} days")


if __name__ == "__main__":
    main()
