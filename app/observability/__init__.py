"""Operations: JSON logs with request ids, /healthz and /readyz, /metrics.

One call from create_app wires all three; each part keeps its state in app.extensions.
"""

from __future__ import annotations

from flask import Flask

from app.observability import health, logs, metrics


def init_app(app: Flask) -> None:
    if not app.testing:  # tests read records through pytest, not stderr
        logs.configure(app.config.get("LOG_FORMAT"), app.config.get("LOG_LEVEL"))
    m = metrics.init_app(app)
    health.init_app(app)
    app.wsgi_app = logs.RequestIdMiddleware(app.wsgi_app, on_status=m.on_status)  # type: ignore[method-assign]
