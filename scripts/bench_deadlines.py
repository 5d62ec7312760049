"""Client CPU per PostgreSQL statement with and without app/deadlines.py's connection
class (the deadline wraps each of psycopg's waits in one more generator).

    DATABASE_URL=postgresql+psycopg://... .venv/bin/python scripts/bench_deadlines.py

CPU time, not wall time: the wrapper costs the worker CPU, and a shared machine's wall
times are noise at this scale. Results go to docs/performance.md.
"""

from __future__ import annotations

import os
import statistics
import time

from sqlalchemy import create_engine, text

from app import deadlines

N, ROUNDS = 2000, 7


def per_statement_us(engine: object) -> float:
    with engine.connect() as conn:  # type: ignore[attr-defined]
        started = time.process_time()
        for _ in range(N):
            conn.execute(text("SELECT 1"))
        return (time.process_time() - started) / N * 1e6


def main() -> None:
    url = os.environ["DATABASE_URL"]
    plain, bounded = create_engine(url), create_engine(url)
    deadlines.install(bounded, {"DATABASE_TIMEOUT": 1.2, "DATABASE_CONNECT_TIMEOUT": 1.0})
    runs: dict[str, list[float]] = {"plain": [], "bounded": []}
    for _ in range(ROUNDS):  # interleaved, so drifting machine load hits both alike
        runs["plain"].append(per_statement_us(plain))
        runs["bounded"].append(per_statement_us(bounded))
    for name, values in runs.items():
        spread = ", ".join(f"{v:.0f}" for v in values)
        print(f"{name:8} median {statistics.median(values):6.1f} us CPU/statement ({spread})")


if __name__ == "__main__":
    main()
