"""Gunicorn settings and hooks (gunicorn reads ./gunicorn.conf.py by default; flags win).

The worker count defaults to what the rate-limit storage allows: 2 x cores + 1 with
Redis (gunicorn's own advice; a validation waits on one Redis round trip, so one worker
per core leaves the CPU idle), one with memory:// (its counters live in each process,
so more workers would grant more than the limits). WEB_CONCURRENCY or -w overrides it,
except that more than one worker on memory:// refuses to start.
Bind and timeouts stay command-line choices.

Several instances on one machine (two ports, or a blue/green pair) must not share
gunicorn's control socket, whose default is one path per user: each instance's goes
into its instance folder, named after its bind (see control_socket_path()). gunicorn
writes no pid file unless --pidfile names one; give each instance its own.

The hooks: usage events and validation audit events wait in each worker's memory for up
to USAGE_FLUSH_INTERVAL; a graceful stop (SIGTERM, SIGINT, SIGQUIT, HUP reloads,
max-requests recycling) must write them before the worker process ends. See
docs/usage.md.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from gunicorn.glogging import Logger as GunicornLogger

# /metrics under several workers: prometheus-client's multi-process mode, each worker
# writing mmap files into one directory. prometheus-client reads the variable once, when
# it is first imported, and the master imports it before any hook runs (the JSON logger
# below imports app.observability): so the directory is chosen here, as gunicorn reads
# this file. Unset, each server gets a directory of its own, so two servers on a host
# never mix; on_starting empties it and on_exit removes it.
_own_metrics_dir: list[str] = []
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _own_metrics_dir.append(tempfile.mkdtemp(prefix="keyledger-metrics-"))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _own_metrics_dir[-1]


def default_workers() -> int:
    """WEB_CONCURRENCY if set, else as many workers as the limit storage can share."""
    from app.config import is_redis

    if os.environ.get("WEB_CONCURRENCY"):
        return int(os.environ["WEB_CONCURRENCY"])
    shared = is_redis(os.environ.get("RATELIMIT_STORAGE_URI"))
    return 2 * (os.cpu_count() or 1) + 1 if shared else 1


workers = default_workers()


def post_worker_init(worker: Any) -> None:
    """In each worker after the fork: start the webhook dispatcher at once (a worker
    that serves only the API would otherwise never start it)."""
    from app.webhooks.service import start_in_worker

    start_in_worker(worker.wsgi)


def control_socket_path(instance: str, bind: str) -> str:
    """`<instance>/gunicorn-<bind>.ctl`. A Unix socket path must fit in 108 bytes, so a
    long instance path falls back to a short name derived from it and the bind, in
    $XDG_RUNTIME_DIR or the temporary directory."""
    import hashlib
    import re
    import tempfile

    name = re.sub(r"[^A-Za-z0-9.-]+", "_", bind).strip("_") or "default"
    path = os.path.join(os.path.abspath(instance), f"gunicorn-{name}.ctl")
    if len(path.encode()) < 100:
        return path
    digest = hashlib.sha256(f"{os.path.abspath(instance)}|{bind}".encode()).hexdigest()[:16]
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return os.path.join(base, f"keyledger-{digest}.ctl")


def worker_exit(server: Any, worker: Any) -> None:
    """In the worker, after its last request: write every queued usage and audit event.

    Gunicorn calls this on every way out of a worker that runs Python code (graceful
    SIGTERM, quick SIGINT/SIGQUIT, max-requests, reload); atexit is the second net.
    SIGKILL and a timed-out worker's abort run nothing: that is the crash bound.
    """
    from app.usage.batch import shutdown_all

    shutdown_all()


def on_exit(server: Any) -> None:
    """In the master (which records nothing unless the app was preloaded and used)."""
    from app.usage.batch import shutdown_all

    shutdown_all()
    for path in _own_metrics_dir:
        shutil.rmtree(path, ignore_errors=True)


def _own_control_socket(server: Any) -> None:
    """Before the control socket opens: give this instance its own one, unless
    --control-socket chose a path."""
    if "control_socket" not in server.cfg.settings:  # gunicorn before 25.1 has none
        return
    from gunicorn.config import ControlSocket

    if server.cfg.control_socket != ControlSocket.default:
        return
    from app.config import PROJECT_ROOT

    instance = os.environ.get("KEYLEDGER_INSTANCE") or str(PROJECT_ROOT / "instance")
    os.makedirs(instance, exist_ok=True)
    bind = ",".join(server.cfg.bind or ["default"])
    server.cfg.set("control_socket", control_socket_path(instance, bind))


def on_starting(server: Any) -> None:
    """In the master, before any worker: the metrics directory without last run's
    files, which would be summed with this run's (prometheus-client asks for the
    directory to be wiped between runs).

    First, refuse several workers on memory:// limits: each would count on its own, so
    every limit would be multiplied by the worker count. gunicorn prints the message
    ("Error: ...") and exits 1. RATELIMIT_ALLOW_PER_WORKER=true starts anyway (a test
    or benchmark that knows it), with the warning."""
    from app.ratelimit import unshared_limits_problem

    problem = unshared_limits_problem(os.environ.get("RATELIMIT_STORAGE_URI"), server.cfg.workers)
    if problem and os.environ.get("RATELIMIT_ALLOW_PER_WORKER", "").lower() in ("1", "true"):
        server.log.warning("%s Started anyway: RATELIMIT_ALLOW_PER_WORKER is set.", problem)
    elif problem:
        for path in _own_metrics_dir:
            shutil.rmtree(path, ignore_errors=True)
        raise RuntimeError(problem)
    for stale in Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).glob("*.db"):
        stale.unlink(missing_ok=True)
    _own_control_socket(server)


def child_exit(server: Any, worker: Any) -> None:
    """In the master, for each worker gone (crashed or stopped): its live gauges (queue
    depths, pool use) leave the sums; its counters stay, as Prometheus expects."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


class JsonLogger(GunicornLogger):
    """Gunicorn's own lines (errors, and the access log when --access-logfile is given)
    in the app's format: JSON unless LOG_FORMAT=text. The formatter goes on gunicorn's
    handlers as it makes them, not through logconfig_dict: any logconfig_dict makes
    gunicorn write an access line for every request even without --access-logfile
    (docs/performance.md, "Gunicorn: no access log by accident")."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        if os.environ.get("LOG_FORMAT", "json").lower() == "text":
            return
        from app.observability.logs import JsonFormatter

        for logger in (self.error_log, self.access_log):
            for handler in logger.handlers:
                handler.setFormatter(JsonFormatter())


logger_class = JsonLogger
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms request_id=%({x-request-id}o)s'
