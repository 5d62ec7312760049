"""Wire webhooks into an app: settings, and a dispatcher thread per process.

The dispatcher starts in each server worker after the fork (load_app in
app/serve.py), or lazily on the first portal request a process serves (flask
run); it scans the feeds and sends what is due every WEBHOOK_INTERVAL seconds.
Running it in every worker is safe (deterministic message ids, leased attempts).
`flask webhooks run` runs the same loop as a process of its own.
"""

from __future__ import annotations

from flask import Flask, current_app

from app.background import Worker
from app.webhooks import delivery, events
from app.webhooks.settings import WebhookSettings

EXTENSION = "keyledger.webhooks"


class Dispatcher:
    def __init__(self, app: Flask, settings: WebhookSettings) -> None:
        self.app = app
        self.settings = settings
        enabled = app.config.get("WEBHOOK_DISPATCHER")
        self.worker = Worker(
            "webhooks",
            self.run_once,
            settings.interval,
            enabled=(not app.testing) if enabled is None else bool(enabled),
        )

    @property
    def enabled(self) -> bool:
        return self.worker.enabled

    def run_once(self) -> tuple[int, int]:
        """(messages queued, attempts made) in one pass."""
        from app.extensions import db

        with self.app.app_context():
            try:
                expiring_days = int(self.app.config.get("KEY_EXPIRING_DAYS", 7))
                queued = events.scan(db.session, expiring_days=expiring_days)
                return queued, delivery.deliver_due(db.session, self.settings)
            finally:
                db.session.remove()

    def ensure_running(self) -> None:
        self.worker.ensure_running()

    def loop(self) -> None:
        """Pass after pass in the calling thread (`flask webhooks run`)."""
        self.worker.run()

    def stop(self, timeout: float = 5.0) -> None:
        self.worker.stop(timeout)


def dispatcher(app: Flask | None = None) -> Dispatcher:
    return (app or current_app).extensions[EXTENSION]


def settings(app: Flask | None = None) -> WebhookSettings:
    return dispatcher(app).settings


def init_app(app: Flask) -> None:
    app.extensions[EXTENSION] = Dispatcher(app, WebhookSettings.from_config(app.config))


def start_in_worker(wsgi: object) -> None:
    """app/serve.py's load_app, in each worker: start the dispatcher without waiting for a portal
    request (a worker may serve only the API)."""
    extensions = getattr(wsgi, "extensions", None)
    if extensions and EXTENSION in extensions:
        extensions[EXTENSION].ensure_running()
