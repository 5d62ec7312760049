"""Does a failed login (and a registration) take the same time whether or not the
email exists?

    .venv/bin/python scripts/bench_login.py [--rounds 40]

Builds the real app on a throw-away SQLite file with the production argon2 parameters,
registers one account, then alternates failed logins through the test client: a known
email with a wrong password, and an unknown email. Prints the medians and their
difference; docs/performance.md records a run. A timing test would be flaky, so this is
a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()

    from flask_migrate import upgrade

    from app import accounts, create_app
    from app.extensions import db
    from app.web import passwords

    tmp = Path(tempfile.mkdtemp())
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp / 'bench.db'}",
            "INSTANCE_PATH": str(tmp),
            "SECRET_KEY": "bench",
            "KEY_PEPPER": "bench",
            "LOGIN_RATE_LIMIT": "100000/minute",
            "LOGIN_ACCOUNT_LIMIT": "100000/minute",
        }
    )
    with app.app_context():
        upgrade()
        accounts.create_user(db.session, passwords(), email="known@example.com", password="a" * 16)
    client = app.test_client()
    token = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')

    def attempt(email: str) -> float:
        html = client.get("/login").get_data(as_text=True)
        data = {"csrf_token": token.search(html).group(1), "email": email, "password": "b" * 16}
        start = time.perf_counter()
        resp = client.post("/login", data=data)
        elapsed = time.perf_counter() - start
        assert resp.status_code == 400, resp.status_code
        return elapsed

    attempt("warmup@example.com")
    known, unknown = [], []
    for _ in range(args.rounds):
        known.append(attempt("known@example.com"))
        unknown.append(attempt("nobody@example.com"))
    k, u = statistics.median(known), statistics.median(unknown)
    print(
        f"argon2 t={app.config['ARGON2_TIME_COST']} m={app.config['ARGON2_MEMORY_COST']} "
        f"p={app.config['ARGON2_PARALLELISM']}, {args.rounds} rounds each"
    )
    print(f"known email, wrong password: median {k * 1000:.1f} ms")
    print(f"unknown email:               median {u * 1000:.1f} ms")
    print(f"difference: {(u - k) * 1000:+.1f} ms ({(u - k) / k * 100:+.1f}%)")

    # Registration: an address already taken against a new one (each new one is new).
    def register(email: str) -> float:
        fresh = app.test_client()
        html = fresh.get("/register").get_data(as_text=True)
        data = {
            "csrf_token": token.search(html).group(1),
            "email": email,
            "password": "c" * 16,
            "confirm": "c" * 16,
        }
        start = time.perf_counter()
        resp = fresh.post("/register", data=data)
        elapsed = time.perf_counter() - start
        assert resp.status_code in (302, 400), resp.status_code
        return elapsed

    taken, new = [], []
    for i in range(args.rounds):
        taken.append(register("known@example.com"))
        new.append(register(f"new{i}@example.com"))
    t, n = statistics.median(taken), statistics.median(new)
    print(f"register, email taken:       median {t * 1000:.1f} ms")
    print(f"register, new email:         median {n * 1000:.1f} ms")
    print(f"difference: {(t - n) * 1000:+.1f} ms ({(t - n) / n * 100:+.1f}%)")


if __name__ == "__main__":
    main()
