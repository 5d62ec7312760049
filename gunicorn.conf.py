"""Gunicorn hooks (gunicorn reads ./gunicorn.conf.py by default; flags still win).

Only lifecycle hooks live here, so bind, workers and timeouts stay command-line choices.
Why: usage events and validation audit events wait in each worker's memory for up to
USAGE_FLUSH_INTERVAL; a graceful stop (SIGTERM, SIGINT, SIGQUIT, HUP reloads, max-requests
recycling) must write them before the worker process ends. See docs/usage.md.
"""

from __future__ import annotations

from typing import Any


def worker_exit(server: Any, worker: Any) -> None:
    """In the worker, after its last request: write every queued usage and audit event.

    Gunicorn calls this on every way out of a worker that runs Python code (graceful
    SIGTERM, quick SIGINT/SIGQUIT, max-requests, reload); atexit is the second net.
    SIGKILL and a timed-out worker's abort run nothing: that is the crash bound.
    """
    from app.usage.recorder import shutdown_all

    shutdown_all()


def on_exit(server: Any) -> None:
    """In the master (which records nothing unless the app was preloaded and used)."""
    from app.usage.recorder import shutdown_all

    shutdown_all()


def when_ready(server: Any) -> None:
    """In the master, before workers fork: memory:// rate-limit counters live in each
    worker, so N workers would grant N times every limit. Say so at start-up."""
    import os

    from app.ratelimit import memory_storage_warning

    warning = memory_storage_warning(os.environ.get("RATELIMIT_STORAGE_URI"), server.cfg.workers)
    if warning:
        server.log.warning(warning)
