"""The one worker-process runner both verifiers use: the database verifier hands it
seq ranges, the export verifier byte ranges of whole lines; each folds the results
in order in its own process, so a report is the same with workers or without."""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any


def start_method() -> str:
    """fork starts a worker in milliseconds and needs nothing importable (spawn
    imports the program again), but is safe only while this process runs no other
    thread."""
    if "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1:
        return "fork"
    return "spawn"


def usable_cores() -> int:
    """Cores this process may run on (its affinity where the OS says)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


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
    tasks there are. Closing the iterator early stops the workers."""
    tasks = iter(tasks)
    ctx = multiprocessing.get_context(start_method())
    with ctx.Pool(workers, initializer=initializer, initargs=initargs) as pool:
        pending: deque[Any] = deque()
        for task in tasks:
            pending.append(pool.apply_async(func, task))
            if len(pending) >= 2 * workers:
                break
        while pending:
            result = pending.popleft().get()
            task = next(tasks, None)
            if task is not None:
                pending.append(pool.apply_async(func, task))
            yield result
