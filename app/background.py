"""One periodic background thread per process: the usage flush, webhook delivery, the
metrics sampler, the audit sealer and the mail sender each run on a `Worker`.

Why one class: every such job needs the same care, and each copy of it had drifted.
The thread starts lazily in the process that serves (never before gunicorn's fork);
a forked child, which inherits the object but not the thread, starts its own; one
failed pass is logged and the next one runs; `wake()` runs a pass early; `stop()`
ends the loop and joins it. The job itself is a plain callable, one pass per call.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class Worker:
    """Calls `step()` every `interval` seconds on a daemon thread of this process.

    `enabled` and `interval` are read on every start and pass, so tests and settings
    may change them after construction. With `wait_first`, the first pass comes one
    interval (or a wake) after the start instead of at once.
    """

    def __init__(
        self,
        name: str,
        step: Callable[[], object],
        interval: float,
        *,
        enabled: bool = True,
        wait_first: bool = False,
    ) -> None:
        self.name = name
        self.step = step
        self.interval = float(interval)
        self.enabled = enabled
        self.wait_first = wait_first
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()

    @property
    def running(self) -> bool:
        """This process's thread exists and is alive."""
        thread = self._thread
        return self._pid == os.getpid() and thread is not None and thread.is_alive()

    @property
    def owned(self) -> bool:
        """This process started the thread (readiness: it should then be running)."""
        return self._pid == os.getpid() and self._thread is not None

    def ensure_running(self) -> bool:
        """Start this process's thread unless it runs already; True when it runs."""
        if not self.enabled:
            return False
        if self.running:
            return True
        with self._lock:
            if self.running:
                return True
            self._stop = threading.Event()
            self._wake = threading.Event()
            self._pid = os.getpid()
            self._thread = threading.Thread(
                target=self._loop,
                args=(self._stop, self._wake),
                name=f"{self.name}-{self._pid}",
                daemon=True,
            )
            self._thread.start()
        return True

    def run(self) -> None:
        """The loop in the calling thread, until stop() (a CLI command's foreground)."""
        with self._lock:
            self._stop = threading.Event()
            self._wake = threading.Event()
        self._loop(self._stop, self._wake)

    def wake(self) -> None:
        """Run the next pass now rather than at the end of the interval."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """End the loop after its current pass and wait for it (this process's only)."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if (
            thread is not None
            and self._pid == os.getpid()
            and thread is not threading.current_thread()
        ):
            thread.join(timeout)

    def _loop(self, stop: threading.Event, wake: threading.Event) -> None:
        from app.errors import UNAVAILABLE  # here: app.errors imports this module's users

        if self.wait_first:
            self._pause(wake)
        while not stop.is_set():
            try:
                self.step()
            except UNAVAILABLE as exc:
                # The database or limit storage did not answer (a worker's first connect
                # on a busy host, a stall): expected, bounded and retried, so a warning
                # in one line, not an error with a traceback at every start.
                log.warning(
                    "%s: the database or limit storage did not answer (%s: %s); retrying in %.1fs",
                    self.name,
                    type(exc).__name__,
                    str(exc).splitlines()[0][:200] if str(exc) else "",
                    self.interval,
                )
            except Exception:  # one failed pass must not end the thread
                log.exception("%s: a pass failed; retrying in %.1fs", self.name, self.interval)
            if stop.is_set():
                return
            self._pause(wake)

    def _pause(self, wake: threading.Event) -> None:
        wake.wait(self.interval)
        wake.clear()
