"""The API's per-app state, made by `app.api.init_app` (app.extensions["keyledger.api"]).

Two small caches that keep work off the validation path; each app (and so each test's
app) has its own, and nothing is kept at module level.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import Flask

from app.keys.cache import KeyRecord

EXTENSION = "keyledger.api"
MAX_HEADS = 10_000
MAX_SEEN = 100_000


@dataclass(slots=True)
class ApiState:
    # The 200 body's fixed part per cached key record, serialised once (app/api/routes.py):
    # keyed by the record's identity, so a reloaded record (revocation, tier change) gets
    # a fresh head; the record is kept beside it so a reused id() cannot match.
    heads: dict[int, tuple[KeyRecord, str]] = field(default_factory=dict)
    # (actor, client IP) pairs already audited in the current minute. Why: an audit event
    # per successful validation cost more background CPU than the request itself
    # (docs/performance.md, "key.validated once a minute"); every validation is in
    # usage, and the trail keeps which key was used, from where, and when, to the minute.
    seen: dict[tuple[str, str | None], None] = field(default_factory=dict)
    minute: int = 0

    def first_this_minute(self, actor: str, ip: str | None, at: float) -> bool:
        """True the first time (actor, ip) is seen in the minute of unix time `at`."""
        minute = int(at // 60)
        seen = self.seen
        if minute != self.minute or len(seen) > MAX_SEEN:
            seen.clear()
            self.minute = minute
        if (actor, ip) in seen:
            return False
        seen[(actor, ip)] = None
        return True


def api_state(app: Flask) -> ApiState:
    return app.extensions[EXTENSION]
