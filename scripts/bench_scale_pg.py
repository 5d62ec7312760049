"""Multiply the usage in a PostgreSQL benchmark database N-fold, in the database.

    .venv/bin/python scripts/bench_scale_pg.py \\
        postgresql+psycopg://postgres@127.0.0.1:5432/keyledger_bench --factor 10

Why: `flask demo seed` writes through the usage recorder at a few thousand events a
second on this 2-core machine, so 10,000,000 events would take hours. This starts
from a database filled by the recorder (`flask demo seed`, then
`scripts/bench_load_pg.py`) and adds FACTOR - 1 copies of its traffic. Copy c moves
every raw event, roll-up row, latency bin and top-list row to another key (the key's
rank shifted by c * STEP, modulo the number of keys) with that key's owner, and adds
the copied roll-up counts to the rows already there, as the recorder's upsert does.
So the roll-ups stay exactly what recording the multiplied events would have given,
and the traffic spreads over more key-hours, as a real tenfold would. Audit events
(the failed validations the security view counts) are not multiplied.
"""

from __future__ import annotations

import argparse
import time

import psycopg

STEP = 101  # coprime with the usual 1,000 keys: every copy lands on other keys

ROLLUP_SUMS = (
    "count",
    "status_2xx",
    "status_3xx",
    "status_4xx",
    "status_5xx",
    "status_other",
    "status_401_403",
    "status_429",
    "latency_sum_ms",
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--factor", type=int, default=10)
    args = parser.parse_args()
    conn = psycopg.connect(args.url.replace("postgresql+psycopg://", "postgresql://"))
    conn.autocommit = True
    run = conn.execute
    run("SET TIME ZONE 'UTC'")
    run("SET synchronous_commit = off")
    run(
        "CREATE TEMP TABLE ranked AS SELECT k.id, k.user_id, u.tier, "
        'row_number() OVER (ORDER BY k.id) - 1 AS r FROM api_key k JOIN "user" u '
        "ON u.id = k.user_id"
    )
    n_keys = run("SELECT count(*) FROM ranked").fetchone()[0]
    for table in ("usage_event", "usage_rollup", "usage_latency_bin", "usage_top_rollup"):
        run(f"CREATE TEMP TABLE orig_{table} AS SELECT * FROM {table}")
    sums = ", ".join(f"{c} = usage_rollup.{c} + excluded.{c}" for c in ROLLUP_SUMS)
    for c in range(1, args.factor):
        started = time.perf_counter()
        run("DROP TABLE IF EXISTS keymap")
        run(
            "CREATE TEMP TABLE keymap AS SELECT a.id AS src, b.id AS dst, b.user_id AS owner, "
            "b.tier FROM ranked a JOIN ranked b ON b.r = (a.r + %s) %% %s",
            (c * STEP, n_keys),
        )
        run("CREATE INDEX ON keymap (src)")
        run(
            "INSERT INTO usage_event (key_id, owner_id, endpoint, method, status, "
            "response_ms, client_ip, at) SELECT m.dst, m.owner, e.endpoint, e.method, "
            "e.status, e.response_ms, e.client_ip, e.at FROM orig_usage_event e "
            "JOIN keymap m ON m.src = e.key_id"
        )
        cols = ", ".join(ROLLUP_SUMS)
        picked = ", ".join(f"r.{x}" for x in ROLLUP_SUMS)
        run(
            f"INSERT INTO usage_rollup (key_id, granularity, bucket, owner_id, {cols}, tier) "
            f"SELECT m.dst, r.granularity, r.bucket, m.owner, {picked}, m.tier "
            "FROM orig_usage_rollup r JOIN keymap m ON m.src = r.key_id "
            f"ON CONFLICT (key_id, granularity, bucket) DO UPDATE SET {sums}"
        )
        run(
            "INSERT INTO usage_latency_bin (key_id, granularity, bucket, bin, count) "
            "SELECT m.dst, b.granularity, b.bucket, b.bin, b.count FROM orig_usage_latency_bin b "
            "JOIN keymap m ON m.src = b.key_id ON CONFLICT (key_id, granularity, bucket, bin) "
            "DO UPDATE SET count = usage_latency_bin.count + excluded.count"
        )
        run(
            "INSERT INTO usage_top_rollup (key_id, dim, granularity, bucket, value, owner_id, "
            "count, errors) SELECT m.dst, t.dim, t.granularity, t.bucket, t.value, m.owner, "
            "t.count, t.errors FROM orig_usage_top_rollup t JOIN keymap m ON m.src = t.key_id "
            "ON CONFLICT (key_id, dim, granularity, bucket, value) DO UPDATE SET "
            "count = usage_top_rollup.count + excluded.count, "
            "errors = usage_top_rollup.errors + excluded.errors"
        )
        print(f"copy {c}: {time.perf_counter() - started:.0f} s", flush=True)
    run("ANALYZE")
    for table in ("usage_event", "usage_rollup", "usage_latency_bin", "usage_top_rollup"):
        print(table, run(f"SELECT count(*) FROM {table}").fetchone()[0])
    conn.close()


if __name__ == "__main__":
    main()
