"""Keys whose creation may have committed without anyone seeing their secret.

Why: a COMMIT can reach the database and be carried out while its answer is lost (the
database or the network stalls in between). The request then answers 503 and the
user never sees the secret, yet the key may be live: a credential nobody holds but an
attacker who later guesses nothing of it, and a row the owner cannot explain. Such a
key's public id is remembered here and, once the database answers again, the key is
revoked (audited as `key.revoked`, reason "secret never shown") if the commit did
happen; if it did not, there is nothing to do. Retried every half second on a
background Worker of this process. A process that dies before the database comes back
forgets its list: the key stays, never shown (docs/reliability.md).
"""

from __future__ import annotations

import logging
import threading

from flask import Flask, current_app, has_app_context
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.background import Worker
from app.extensions import db

log = logging.getLogger(__name__)

EXTENSION = "keyledger.unshown_keys"
REASON = "secret never shown: the database did not confirm the key's creation"


class Unshown:
    """Public ids of keys whose creation's commit went unanswered, until settled."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._ids: set[str] = set()
        self._lock = threading.Lock()
        self.worker = Worker("unshown-keys", self.settle, 0.5, wait_first=True)

    def remember(self, public_id: str) -> None:
        with self._lock:
            self._ids.add(public_id)
        log.warning(
            "key %s: creation unconfirmed; revoking it once the database answers", public_id
        )
        self.worker.ensure_running()

    def pending(self) -> set[str]:
        with self._lock:
            return set(self._ids)

    def settle(self) -> None:
        """Revoke each remembered key that exists and is live; forget it either way.
        Raises the database's error while it is still unreachable (the Worker retries)."""
        from app.keys.lifecycle import revoke_unshown
        from app.models import ApiKey

        for public_id in sorted(self.pending()):
            with self.app.app_context(), Session(db.engine) as session:
                key = session.scalar(select(ApiKey).where(ApiKey.public_id == public_id))
                if key is not None and key.revoked_at is None:
                    revoke_unshown(session, key, REASON)
                    session.commit()
                    log.warning("key %s: revoked, its secret was never shown", public_id)
            with self._lock:
                self._ids.discard(public_id)


def remember(public_id: str) -> None:
    """Note a key whose creation's commit went unanswered (in an app context)."""
    if has_app_context():
        current_app.extensions[EXTENSION].remember(public_id)


def init_app(app: Flask) -> None:
    app.extensions[EXTENSION] = Unshown(app)
