"""A separate process that appends audit events the way request handlers do:
`python append_worker.py DB_URL INSTANCE N TAG` (a commit every 100 events)."""

from __future__ import annotations

import sys
from pathlib import Path

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
        for i in range(n):
            trail.record(db.session, "key.validated", actor=f"key:{tag}", details={"i": i})
            if i % 100 == 99:
                db.session.commit()
        db.session.commit()
    print("done", tag)


if __name__ == "__main__":
    main()
