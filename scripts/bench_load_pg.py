"""Copy a seeded SQLite benchmark database into an empty, migrated PostgreSQL one.

    .venv/bin/python scripts/bench_load_pg.py sqlite:////tmp/bench.db \\
        postgresql+psycopg://postgres@127.0.0.1:5432/keyledger_bench

Why: on a shared 2-core machine `flask demo seed --events 1000000` against PostgreSQL
ran at a few hundred events a second (the flush is CPU-bound and was starved), so the
PostgreSQL benchmark reads the very rows the recorder wrote into SQLite, moved with
COPY: the same users, keys, raw events, roll-ups, latency bins and audit events. The
schema comes from the migrations (run `flask db upgrade` on the target first).
"""

from __future__ import annotations

import sqlite3
import sys

import psycopg

TABLES = (
    "user",
    "api_key",
    "usage_event",
    "usage_rollup",
    "usage_latency_bin",
    "usage_top_rollup",
    "audit_event",
)


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    source = sqlite3.connect(sys.argv[1].removeprefix("sqlite:///"))
    target = psycopg.connect(sys.argv[2].replace("postgresql+psycopg://", "postgresql://"))
    with target.transaction(), target.cursor() as cur:
        cur.execute("SET TIME ZONE 'UTC'")
        present = list(TABLES)
        cur.execute(
            "TRUNCATE "
            + ", ".join(f'"{t}"' for t in reversed(present))
            + " RESTART IDENTITY CASCADE"
        )
        for table in present:
            rows = source.execute(f'SELECT * FROM "{table}"')
            columns = [d[0] for d in rows.description]
            cur.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = %s",
                (table,),
            )
            types = dict(cur.fetchall())
            booleans = {i for i, c in enumerate(columns) if types.get(c) == "boolean"}
            n = 0
            with cur.copy(f'COPY "{table}" ({", ".join(columns)}) FROM STDIN') as copy:
                for row in rows:
                    if booleans:
                        row = tuple(bool(v) if i in booleans else v for i, v in enumerate(row))
                    copy.write_row(row)
                    n += 1
            print(f"{table}: {n} rows", flush=True)
            if "id" in columns:
                cur.execute(
                    f"SELECT setval(pg_get_serial_sequence('\"{table}\"', 'id'), "
                    f'COALESCE(MAX(id), 1)) FROM "{table}"'
                )
    target.autocommit = True
    target.execute("ANALYZE")
    target.close()


if __name__ == "__main__":
    main()
