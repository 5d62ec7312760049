"""A separate process that appends audit events the way request handlers do:
`python append_worker.py DB_URL INSTANCE N TAG` (a commit every 10 events)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from sqlalchemy.exc import OperationalError

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from app import create_app
from app.audit import trail
from app.extensions import db


def main() -> None:
    url, instance, n, tag = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    app = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": url,
            "INSTANCE_PATH": instance,
            "SECRET_KEY": "t",
            "KEY_PEPPER": "t",
        }
    )
    with app.app_context():
        done = 0
        retries = 0
        while done < n:
            chunk = min(10, n - done)
            try:
                for i in range(done, done + chunk):
                    trail.record(db.session, "key.validated", actor=f"key:{tag}", details={"i": i})
                db.session.commit()
                done += chunk
            except OperationalError:
                # SQLite under heavy contention ("database is locked" after its busy
                # timeout): the whole transaction rolls back and is tried again, as a
                # careful client would; nothing half-written can reach the log.
                db.session.rollback()
                retries += 1
                if retries > 200:
                    raise
                time.sleep(0.05)
    print("done", tag)


if __name__ == "__main__":
    main()
