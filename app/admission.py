"""Portal pages take turns in a worker; the API, health checks and static files do not wait.

Why: a worker runs each request in a thread of its own, and the threads share one GIL. A
page is CPU-heavy (a few milliseconds of Python) and makes several database queries;
each time a query returns, its thread waits for the GIL behind whichever threads are
computing, up to the switch interval each time, and CPython hands the GIL over with no
fairness: with several pages in flight in one worker, some waited ten times as long as
when the worker's pages ran one at a time, at the same throughput or more
(docs/performance.md, "Servers side by side").

Validations are not gated: they are short, wait on Redis once, and taking turns made
their p99 at 64 connections worse; nor are the audit log's public endpoints (verifiers
and witnesses, machine clients like the API's), /healthz, /readyz, /metrics and static
files: a probe must not queue behind pages.

A page's body (a form) is read before it takes its turn, so a client trickling its body
holds a thread, never the turn (the slow-client guarantee of docs/decisions.md). A page
that cannot have its turn within PATIENCE runs anyway: a slow page (an export, a stalled
database) delays the others by at most that much, never blocks them.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterable
from typing import Any

# Longest wait for the turn before a page runs beside the one holding it.
PATIENCE = 0.2
# Paths that never wait: the API and what probes and browsers fetch cheaply.
UNGATED = ("/api/", "/audit/", "/healthz", "/readyz", "/metrics", "/static/")


class PageTurns:
    """WSGI middleware: one portal request at a time per process (see module docstring)."""

    def __init__(self, app: Callable[..., Iterable[bytes]], max_body: int) -> None:
        self.app = app
        self.max_body = max_body
        self._turn = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("PATH_INFO", "").startswith(UNGATED):
            return self.app(environ, start_response)
        self._read_body_first(environ)
        mine = self._turn.acquire(timeout=PATIENCE)
        try:
            return self.app(environ, start_response)
        finally:
            if mine:
                self._turn.release()

    def _read_body_first(self, environ: dict[str, Any]) -> None:
        """The whole body in memory when its length is declared and allowed; anything else
        (no length, too long: refused by the app) is left to the app as it comes."""
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return
        if 0 < length <= self.max_body:
            try:
                body = environ["wsgi.input"].read(length)
            except Exception:  # the client went away: the app sees a short body (400)
                body = b""
            environ["wsgi.input"] = io.BytesIO(body)
