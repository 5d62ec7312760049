"""`make serve`: Keyledger under Granian (a Rust HTTP server; WSGI), with the settings
and hooks a deployment needs. Why Granian and not gunicorn: docs/decisions.md (slow
clients held gunicorn's workers; measured in docs/performance.md).

    python -m app.serve [--host 127.0.0.1] [--port 5000] [--workers N] [--check]

- Workers: WEB_CONCURRENCY or --workers, else as many as the limit storage can share:
  one per core with Redis (each worker runs requests in threads, so a validation waiting
  on Redis leaves the core to another request), one with memory:// (its counters live
  in each process, so more workers would grant more than the limits: refused, unless
  RATELIMIT_ALLOW_PER_WORKER=true, for a test or benchmark that knows it).
- Logs: Granian's own lines in the app's JSON format (LOG_FORMAT=text for text); an
  access log only with ACCESS_LOG=true (a line per request costs the hot path), its
  lines carrying the request id and redacted like every other line.
- /metrics across workers: prometheus-client's multi-process mode, a directory per
  server (PROMETHEUS_MULTIPROC_DIR, else a fresh one), emptied at start, removed at exit.
- A graceful stop (SIGTERM, SIGINT to the server process): new connections are no
  longer taken off the network, the workers serve every connection already queued and
  in flight (app/drain.py: none is reset), then each worker writes its queued usage
  and audit events as it exits.
- A reload (SIGHUP): one worker at a time is replaced, the new one started before the
  old one stops, on the old one's listening socket, which is the server's own (one per
  worker), so nothing queued is lost.
  SIGKILL and a killed worker run nothing: that is the crash bound of docs/usage.md.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app import drain
from app.admission import PageTurns

# Seconds a graceful stop waits for each worker to finish what it serves and write its
# queues (the wait for queued connections is app/drain.py's).
STOP_SECONDS = 30
# Python threads per worker (Granian's default is 512): see docs/performance.md.
THREADS = 512
ACCESS_LOG_FORMAT = (
    '%(addr)s "%(method)s %(path)s" %(status)d %(dt_ms).1fms request_id=%(header{x-request-id})s'
)


def default_workers(env: dict[str, str] | os._Environ[str] = os.environ) -> int:
    """WEB_CONCURRENCY if set, else as many workers as the limit storage can share."""
    from app.config import is_redis

    if env.get("WEB_CONCURRENCY"):
        return int(env["WEB_CONCURRENCY"])
    return (os.cpu_count() or 1) if is_redis(env.get("RATELIMIT_STORAGE_URI")) else 1


def load_app() -> Any:
    """In each worker: the app, its webhook dispatcher started at once (a worker that
    serves only the API would otherwise never start it), and the exit hook; served
    behind PageTurns (app/admission.py)."""
    import multiprocessing.util

    _die_with_the_server()
    from app import create_app
    from app.webhooks.service import start_in_worker

    app = create_app()
    start_in_worker(app)
    # Everything loaded so far lives as long as the worker: frozen, out of the collector's
    # sight, so a full collection stops walking it while every thread of the worker waits
    # (the validation's p99: docs/performance.md, "Servers side by side").
    gc.collect()
    gc.freeze()
    _mark_ready()
    # multiprocessing runs its finalizers when the worker's target returns, that is after
    # Granian has served the last request; atexit does not run in a forked worker.
    multiprocessing.util.Finalize(None, _worker_exit, exitpriority=100)
    return PageTurns(app, app.config["MAX_CONTENT_LENGTH"])


READY_DIR = "KEYLEDGER_READY_DIR"
# Longest wait for a reloaded worker's replacement to load the app before the old one is
# stopped anyway (a replacement that cannot start must not block the reload for ever).
READY_SECONDS = 120.0


def _mark_ready() -> None:
    """In a worker whose app is loaded: a file named after its pid in the server's
    directory, so that a reload stops the worker it replaces only now."""
    folder = os.environ.get(READY_DIR)
    if folder:
        Path(folder, str(os.getpid())).touch()


def _wait_ready(worker: Any) -> bool:
    """Until `worker` has loaded the app (or died, or READY_SECONDS passed)."""
    folder = os.environ.get(READY_DIR)
    pid = getattr(getattr(worker, "inner", None), "pid", None)
    if not folder or pid is None:
        return False
    deadline = time.monotonic() + READY_SECONDS
    while not Path(folder, str(pid)).exists():
        if not worker.is_alive() or time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _stop_while_loading(signum: int, frame: object) -> None:
    """A worker's SIGTERM until Granian installs the worker's own handlers (as it
    starts serving): the worker has served nothing and queued nothing, so it ends now.
    Not by SystemExit: a handler runs wherever the main thread is, and an exception
    raised inside a weakref callback or a `__del__` is printed and dropped (seen in CI:
    the worker went on loading, served, and was killed 30 s later)."""
    os._exit(0)


def _forked_worker() -> None:
    """In a process just forked from the server: a stop (SIGTERM) ends it at once.

    It inherits the server process's handlers, which in a worker set the flags of the
    server's copy and nothing else: a stop received while a worker loaded the app was
    lost, the worker went on to serve, and STOP_SECONDS later the server killed it, with
    whatever it had queued since (a stop under load, or during a test's short run).

    SIGINT is blocked in the worker and in every thread it starts: Ctrl-C reaches the
    whole process group, and a worker that stopped on its own SIGINT closed connections
    before the server had drained them (app/drain.py), then counted as an unexpected
    exit (the server's status 1). The server turns its SIGINT into each worker's SIGTERM.
    """
    import signal

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    signal.signal(signal.SIGTERM, _stop_while_loading)


def _die_with_the_server() -> None:
    """A worker gets SIGTERM (a graceful stop) when the server process dies, however it
    dies: Granian's workers do not watch their parent, and a killed server (SIGKILL, an
    out-of-memory kill) left them serving on, holding the port and their queues."""
    import signal

    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the server died before the call
            os.kill(os.getpid(), signal.SIGTERM)


def _worker_exit() -> None:
    """Write every queued usage and audit event; this worker's live gauges (queue depths,
    pool use) leave the /metrics sums, its counters stay, as Prometheus expects."""
    from prometheus_client import multiprocess

    from app.usage.batch import shutdown_all

    shutdown_all()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(os.getpid())


def _log_config() -> dict[str, Any]:
    """Granian's loggers through the app's formatter (app/observability/logs.py)."""
    text = os.environ.get("LOG_FORMAT", "json").lower() == "text"
    name = "TextFormatter" if text else "JsonFormatter"
    return {
        "formatters": {"app": {"()": f"app.observability.logs.{name}"}},
        "handlers": {
            "console": {
                "formatter": "app",
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
            },
            "access": {
                "formatter": "app",
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
            },
        },
    }


class _Replaced:
    """A worker being replaced (reload, or a crashed worker's respawn): it is stopped only
    once the worker started in its place has loaded the app (Granian waits a fixed delay,
    and under load both old workers were gone seconds before either new one served: no
    worker took connections, and a stop meeting a worker still loading killed it with its
    queues); then the socket holds new connections and the queue is emptied; once it has
    stopped, connections are taken again (by the worker already started in its place)."""

    def __init__(self, worker: Any, sock: socket.socket, successor: Callable[[], Any]) -> None:
        self._worker, self._sock, self._successor = worker, sock, successor

    def __getattr__(self, name: str) -> Any:
        return getattr(self._worker, name)

    def terminate(self) -> None:
        if not _wait_ready(self._successor()):
            from granian.log import logger

            logger.warning("stopping the old worker before its replacement has loaded the app")
        drain.hold(self._sock)
        self._worker.terminate()

    def join(self, timeout: float | None = None) -> None:
        try:
            self._worker.join(timeout)
        finally:
            drain.release(self._sock)


def _server_class() -> type:
    from granian.log import logger
    from granian.net import SocketSpec
    from granian.server import Server

    class KeyledgerServer(Server):  # type: ignore[misc, valid-type]
        """Granian's server with a listening socket per worker, owned by the server
        process: worker N's socket outlives worker N, so the one started in its place
        (a reload, a respawn) takes over its queue, where Granian's own sockets, each
        made by its worker, reset the queue when that worker stopped. One SO_REUSEPORT
        socket per worker, not one shared by all: the kernel then spreads connections
        over the workers by their addresses, where a shared socket gave each new
        connection to whichever worker's accept loop woke first, in practice nearly
        always the same one, so one worker's GIL served all and the other core idled
        (docs/performance.md, "Servers side by side")."""

        def _init_shared_socket(self) -> None:
            if self.bind_uds:
                return super()._init_shared_socket()
            spec = SocketSpec(self.bind_addr, self.bind_port, self.backlog)
            self._listeners: list[tuple[Any, socket.socket]] = []
            for _ in range(self.workers):
                holder = spec.build()
                sock = socket.socket(fileno=holder.get_fd())
                sock.set_inheritable(True)
                self._listeners.append((holder, sock))
            self._ssp = None
            self._use_listener(0)

        def _use_listener(self, idx: int) -> None:
            """Granian hands a new worker `_shd`/`_sso`: make them worker idx's."""
            self._shd, self._sso = self._listeners[idx % len(self._listeners)]
            self._sfd = self._shd.get_fd()

        def _spawn_worker(self, idx: int, *args: Any, **kwargs: Any) -> Any:
            if self._tcp():
                self._use_listener(idx)
            return super()._spawn_worker(idx, *args, **kwargs)

        def _drop_shared_socket(self) -> None:
            for sock in self._tcp():
                sock.close()
            self._listeners = []
            super()._drop_shared_socket()

        def _tcp(self) -> list[socket.socket]:
            """The workers' TCP listening sockets (none when serving on a Unix socket)."""
            return [sock for _, sock in getattr(self, "_listeners", ())]

        def _respawn_workers(self, workers: Any, *args: Any, **kwargs: Any) -> Any:
            socks = self._tcp()
            if socks:
                for idx in workers:
                    sock = socks[idx % len(socks)]
                    self.wrks[idx] = _Replaced(self.wrks[idx], sock, lambda idx=idx: self.wrks[idx])
            return super()._respawn_workers(workers, *args, **kwargs)

        def shutdown(self, exit_code: int = 0) -> None:
            socks = self._tcp()
            if socks:
                try:
                    if not drain.hold(*socks):
                        logger.warning("stopping with connections still queued")
                except OSError as err:
                    logger.warning("could not drain the listen queue: %s", err)
            super().shutdown(exit_code)

    return KeyledgerServer


def _metrics_dir() -> list[str]:
    """PROMETHEUS_MULTIPROC_DIR as given (emptied of last run's files, which would be
    summed with this run's), else a directory of this server's own."""
    own: list[str] = []
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        own.append(tempfile.mkdtemp(prefix="keyledger-metrics-"))
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = own[0]
    for stale in Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).glob("*.db"):
        stale.unlink(missing_ok=True)
    return own


def settings(argv: list[str] | None = None) -> dict[str, Any]:
    """The server's settings from the command line and the environment; SystemExit with
    the reason when they are refused."""
    parser = argparse.ArgumentParser(prog="python -m app.serve", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "5000")))
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument(
        "--threads",
        type=int,
        default=THREADS,
        help="Python threads per worker (a slow client's body holds one while it trickles)",
    )
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--check", action="store_true", help="print the settings as JSON and exit")
    args = parser.parse_args(argv)
    from app.ratelimit import unshared_limits_problem

    workers = args.workers or default_workers()
    problem = unshared_limits_problem(os.environ.get("RATELIMIT_STORAGE_URI"), workers)
    allowed = os.environ.get("RATELIMIT_ALLOW_PER_WORKER", "").lower() in ("1", "true")
    if problem and not allowed:
        raise SystemExit(f"Error: {problem}")
    return {
        "host": args.host,
        "port": args.port,
        "workers": workers,
        "threads": args.threads,
        "log_level": args.log_level,
        "check": args.check,
        "warning": problem,
    }


def main(argv: list[str] | None = None) -> None:
    # First: prometheus-client reads the variable once, when it is first imported (the
    # settings' checks import it), and the workers inherit that choice.
    own = _metrics_dir()
    own.append(tempfile.mkdtemp(prefix="keyledger-ready-"))
    os.environ[READY_DIR] = own[-1]  # the workers inherit it
    try:
        conf = settings(argv)
        if conf.pop("check"):
            print(json.dumps(conf))
            return
        from granian.constants import Interfaces
        from granian.log import logger

        server = _server_class()(
            "app.serve:load_app",
            address=conf["host"],
            port=conf["port"],
            interface=Interfaces.WSGI,
            workers=conf["workers"],
            blocking_threads=conf["threads"],
            backpressure=conf["threads"],
            factory=True,
            log_level=conf["log_level"],
            log_dictconfig=_log_config(),
            log_access=os.environ.get("ACCESS_LOG", "").lower() in ("1", "true"),
            log_access_format=ACCESS_LOG_FORMAT,
            respawn_failed_workers=True,
            workers_kill_timeout=STOP_SECONDS,
        )
        if conf["warning"]:
            logger.warning("%s Started anyway: RATELIMIT_ALLOW_PER_WORKER is set.", conf["warning"])
        os.register_at_fork(after_in_child=_forked_worker)  # it forks only its workers
        server.serve()
    finally:
        for path in own:
            shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
