"""Usage recording: what every key-authenticated request did, for billing and security.

The API blueprint hands each request's facts to the app's recorder and moves on; the
recorder keeps writes out of the request's critical path. This is the interface the
rest of the app calls; app/usage/batch.py holds the implementation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from flask import Flask, current_app


@dataclass(frozen=True, slots=True)
class UsageEvent:
    key_id: int  # ApiKey.id
    owner_id: int  # User.id
    endpoint: str  # our endpoint, or the `request.path` the calling service reported
    method: str
    status: int
    response_ms: float
    client_ip: str | None
    at: datetime  # timezone-aware UTC
    tier: str | None = None  # the owner's tier when answered: billing prices hours by it


class Recorder(Protocol):
    def record(self, event: UsageEvent) -> None:
        """Queue one usage event; never blocks on the database."""

    def audit(self, action: str, **fields: Any) -> None:
        """Queue an audit event (trail.record keyword arguments) for the batched path."""

    def flush(self) -> None:
        """Write everything queued now (shutdown, tests, CLI)."""


def recorder(app: Flask | None = None) -> Recorder:
    return (app or current_app).extensions["keyledger.usage"]


def init_app(app: Flask) -> None:
    """The app's batched recorder. Its flush thread starts on first use, in the process
    that serves (never before gunicorn's fork); the process's at-fork and at-exit hooks
    are installed with the first recorder."""
    from app.usage.batch import BatchRecorder, install_process_hooks

    app.extensions["keyledger.usage"] = BatchRecorder.from_app(app)
    install_process_hooks()
