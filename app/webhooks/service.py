"""Wire webhooks into an app: settings, and a dispatcher thread per process.

The dispatcher starts in each gunicorn worker after the fork (post_worker_init in
gunicorn.conf.py), or lazily on the first portal request a process serves (flask
run); it scans the feeds and sends what is due every WEBHOOK_INTERVAL seconds.
Running it in every worker is safe (deterministic message ids, leased attempts).
`flask webhooks run` runs the same loop as a process of its own.
"""

from __future__ import annotations

import logging
import os
import threading

from flask import Flask, current_app

from app.webhooks import delivery, events
from app.webhooks.settings import WebhookSettings

log = logging.getLogger(__name__)
EXTENSION = "keyledger.webhooks"


class Dispatcher:
    def __init__(self, app: Flask, settings: WebhookSettings) -> None:
        self.app = app
        self.settings = settings
        self._pid: int | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        enabled = app.config.get("WEBHOOK_DISPATCHER")
        self.enabled = (not app.testing) if enabled is None else bool(enabled)

    def run_once(self) -> tuple[int, int]:
        """(messages queued, attempts made) in one pass."""
        from app.extensions import db

        with self.app.app_context():
            try:
                return events.scan(db.session), delivery.deliver_due(db.session, self.settings)
            finally:
                db.session.remove()

    def ensure_running(self) -> None:
        if not self.enabled or (self._pid == os.getpid() and self._thread is not None):
            return
        with self._lock:
            if self._pid == os.getpid() and self._thread is not None:
                return
            self._stop = threading.Event()
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self.loop, name="webhooks", daemon=True)
            self._thread.start()

    def loop(self) -> None:
        stop = self._stop
        while not stop.is_set():
            try:
                self.run_once()
            except Exception:
                log.exception("webhook dispatcher pass failed; retrying")
            stop.wait(self.settings.interval)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None and self._pid == os.getpid():
            self._thread.join(timeout)


def dispatcher(app: Flask | None = None) -> Dispatcher:
    return (app or current_app).extensions[EXTENSION]


def settings(app: Flask | None = None) -> WebhookSettings:
    return dispatcher(app).settings


def init_app(app: Flask) -> None:
    app.extensions[EXTENSION] = Dispatcher(app, WebhookSettings.from_config(app.config))


def start_in_worker(wsgi: object) -> None:
    """gunicorn's post_worker_init: start the dispatcher without waiting for a portal
    request (a worker may serve only the API)."""
    extensions = getattr(wsgi, "extensions", None)
    if extensions and EXTENSION in extensions:
        extensions[EXTENSION].ensure_running()
