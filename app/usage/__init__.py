"""Usage recording: what every key-authenticated request did, for billing and security.

The API blueprint hands each request's facts to the app's recorder and moves on; the
recorder keeps writes out of the request's critical path. This is the interface the
rest of the app calls; app/usage/recorder.py holds the implementation.
"""

from __future__ import annotations

import importlib
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


# Importing the submodule app.usage.recorder sets the package attribute `recorder` to
# that module, which would shadow the function above for everyone importing it later
# (`from app.usage import recorder`). Load the implementation here, once, and bind the
# function again. Import names from the implementation with
# `from app.usage.recorder import BatchRecorder`, never `import app.usage.recorder as m`.
_get_recorder = recorder
importlib.import_module("app.usage.recorder")
recorder = _get_recorder
