"""Run as a separate process by test_concurrency: one "worker" recording and flushing.

argv: database URL, instance dir, key id, owner id, events, batch size, go-file path.
Each process queues its events, says "ready", and flushes when the go file appears,
so that every process flushes at the same moment.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import UTC, datetime

from app import create_app
from app.usage import UsageEvent
from app.usage.batch import BatchRecorder


def main() -> None:
    url, instance, key_id, owner_id, n, batch, go = sys.argv[1:8]
    app = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": url,
            "INSTANCE_PATH": instance,
            "SECRET_KEY": "test-secret-key",
            "KEY_PEPPER": "test-pepper",
            # Four processes flush at once: the test counts what they wrote, so SQLite's
            # lock wait must not turn a loaded machine into a lost batch.
            "DATABASE_TIMEOUT": 60.0,
        }
    )
    rec = BatchRecorder(app, mode="manual", batch_max=int(batch))
    at = datetime(2026, 11, 25, 12, 30, 15, tzinfo=UTC)
    for i in range(int(n)):
        rec.record(
            UsageEvent(
                int(key_id),
                int(owner_id),
                "/v1/x",
                "GET",
                200 + (i % 4) * 100,
                float(i % 50),
                "198.51.100.9",
                at,
            )
        )
    print("ready", flush=True)
    deadline = time.monotonic() + 120
    while not os.path.exists(go) and time.monotonic() < deadline:
        time.sleep(0.005)
    rec.flush()
    assert rec.pending() == 0, "a batch was left unwritten"
    print(rec.flushed)


if __name__ == "__main__":
    main()
