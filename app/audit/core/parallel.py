"""The one worker-process runner both verifiers use: the database verifier hands it
seq ranges, the export verifier byte ranges of whole lines; each folds the results
in order in its own process, so a report is the same with workers or without.

Why concurrent.futures and a fork server rather than multiprocessing.Pool:

- Pool waits forever for a task whose worker died (killed, crashed, or its
  initializer failed: Pool starts another and the task is lost), and its
  terminate() can deadlock when a pool is closed with tasks in flight (a worker
  holds a queue lock when it is stopped; CPython issues 73945, 96995). Closing
  early is what a verifier does on every damaged log. ProcessPoolExecutor answers
  a lost worker with BrokenProcessPool, raised here as WorkerLost, and its
  shutdown lets the in-flight tasks finish instead of killing them mid-write.
- Workers come from a fork server: a process of their own that runs no other
  thread, with the task's module imported once, from which each worker is forked.
  That is safe whatever threads the calling process runs, so the choice no longer
  depends on whether some unrelated thread happens to be alive.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any


class WorkerLost(RuntimeError):
    """A worker process ended before answering: killed, crashed, or its initializer
    failed. The verifiers then check in one process (and say so)."""


def start_method() -> str:
    """forkserver where the platform has it (Linux, macOS), else spawn."""
    methods = multiprocessing.get_all_start_methods()
    return "forkserver" if "forkserver" in methods else "spawn"


def usable_cores() -> int:
    """Cores this process may run on (its affinity where the OS says)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _context(modules: Iterable[str]) -> Any:
    method = start_method()
    ctx = multiprocessing.get_context(method)
    if method == "forkserver":
        # Imported once in the server (the first caller's list, when it starts), not by
        # each worker: the task's modules, and the main script, which a worker would
        # otherwise run again (as __mp_main__) before its first task.
        ctx.set_forkserver_preload(["__main__", *sorted(set(modules) - {"__main__"})])
    return ctx


def ordered_map(
    func: Callable[..., Any],
    tasks: Iterable[tuple[Any, ...]],
    workers: int,
    *,
    initializer: Callable[..., None] | None = None,
    initargs: tuple[Any, ...] = (),
) -> Iterator[Any]:
    """func(*task) for each task, run by `workers` processes, yielded in task order.
    At most two tasks per worker are in flight, so memory stays flat however many
    tasks there are. Closing the iterator early cancels the tasks not started and
    waits for the running ones (each one range). A worker that dies raises
    WorkerLost rather than leaving the caller waiting."""
    tasks = iter(tasks)
    modules = {func.__module__} | ({initializer.__module__} if initializer else set())
    pool = ProcessPoolExecutor(
        workers, mp_context=_context(modules), initializer=initializer, initargs=initargs
    )
    try:
        pending: deque[Future[Any]] = deque(
            pool.submit(func, *task) for task in itertools.islice(tasks, 2 * workers)
        )
        while pending:
            result = pending.popleft().result()
            task = next(tasks, None)
            if task is not None:
                pending.append(pool.submit(func, *task))
            yield result
    except BrokenProcessPool as exc:
        raise WorkerLost(f"a worker process ended before answering: {exc}") from exc
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
