"""The batched usage recorder: requests append to memory, a thread writes in batches.

Why: a database write per request would cost the validation hot path more than the
validation itself. `record()` and `audit()` only append to an in-process deque; a
daemon thread wakes every USAGE_FLUSH_INTERVAL seconds (or sooner when a batch fills)
and writes everything queued in one transaction: raw events, roll-up upserts, the
keys' last use, and the queued audit events.

Durability bound: a graceful stop (SIGTERM under gunicorn, normal interpreter exit)
flushes through the worker exit finalizer in app/serve.py and atexit. A crash (SIGKILL,
OOM, power loss) loses what was queued since the last flush: at most one interval
(default 1 s) of usage and validation audit events, per worker. While the database
is unreachable the batch is kept and retried, up to USAGE_QUEUE_MAX events; beyond
that new events are dropped and counted in the log.

Fork safety: nothing starts at import or in create_app. The thread starts on the first
record() in the process that serves requests; after a fork the child forgets what the
parent queued (the parent still owns and writes it) and starts its own thread.

Modes (USAGE_MODE): "thread" (production), "manual" (nothing is written until
flush() is called: the default when TESTING, so tests decide when), "sync" (each
record() writes at once; for debugging only).
"""

from __future__ import annotations

import atexit
import logging
import os
import secrets
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask
from sqlalchemy import and_, bindparam, delete, insert, or_, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session

from app.background import Worker
from app.extensions import db
from app.models import ApiKey, UsageBatch, UsageRecord
from app.usage import UsageEvent, rollups, store

log = logging.getLogger(__name__)

MODES = ("thread", "manual", "sync")
# The database did not answer (refused, gone, or past its deadline: app.deadlines'
# DatabaseTimeout is a TimeoutError that SQLAlchemy passes on unwrapped, and the pool's
# wait its own TimeoutError): the batch is kept whole and retried, never written item
# by item, where the item that met the deadline was dropped though its request had
# been answered (billed use lost; issue 22).
UNAVAILABLE = (OperationalError, InterfaceError, TimeoutError, PoolTimeout)
# Answers that refuse the key itself (dead, wrong scope, over a limit): "last used"
# stays where the last real use left it.
KEY_REFUSED = frozenset({401, 403, 429})
# last_used_at is rewritten only when it moved on by this much (or the IP changed).
LAST_USED_RESOLUTION = timedelta(minutes=1)
# How long a written batch's id is kept for a retry to find.
BATCH_ID_KEEP = timedelta(days=1)

_LIVE: weakref.WeakSet[BatchRecorder] = weakref.WeakSet()


@dataclass(frozen=True, slots=True)
class _Audit:
    action: str
    fields: dict[str, Any]


@dataclass
class _Batch:
    events: list[UsageEvent] = field(default_factory=list)
    audits: list[_Audit] = field(default_factory=list)
    # Written with the batch (usage_batch), so a retry can tell whether an attempt whose
    # commit went unanswered did commit. `tried`: such an attempt was made.
    id: str = field(default_factory=lambda: secrets.token_hex(16))
    tried: bool = False

    def __len__(self) -> int:
        return len(self.events) + len(self.audits)


class BatchRecorder:
    """The app's Recorder (see app/usage/__init__.py); one per app per process."""

    def __init__(
        self,
        app: Flask,
        *,
        mode: str = "thread",
        interval: float = 1.0,
        batch_max: int = 5000,
        queue_max: int = 100_000,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"USAGE_MODE must be one of {', '.join(MODES)}, not {mode!r}")
        if not interval > 0:
            raise ValueError("USAGE_FLUSH_INTERVAL must be positive")
        self.app = app
        self.mode = mode
        self.interval = float(interval)
        self.batch_max = int(batch_max)
        self.queue_max = int(queue_max)
        self.dropped = 0
        self.flushed = 0
        # The flush's statements, compiled once per dialect and table (app/usage/store.py).
        self._statements: dict[tuple[str, str], Any] = {}
        self._reset_process_state()
        _LIVE.add(self)

    @classmethod
    def from_app(cls, app: Flask) -> BatchRecorder:
        mode = app.config.get("USAGE_MODE") or ("manual" if app.testing else "thread")
        return cls(
            app,
            mode=mode,
            interval=float(app.config.get("USAGE_FLUSH_INTERVAL", 1.0)),
            batch_max=int(app.config.get("USAGE_BATCH_MAX", 5000)),
            queue_max=int(app.config.get("USAGE_QUEUE_MAX", 100_000)),
        )

    def _reset_process_state(self) -> None:
        """Fresh locks, queue and thread: at construction and in a forked child."""
        self._pid = os.getpid()
        self._queue: deque[UsageEvent | _Audit] = deque()
        self._retry = _Batch()
        self._flush_lock = threading.Lock()
        self._closed = False
        self._worker = Worker(
            "usage-flush", self.flush, self.interval, enabled=self.mode == "thread", wait_first=True
        )
        self._last_used: dict[int, tuple[datetime, str | None]] = {}
        self._engine: Engine | None = None
        self._next_prune = 0.0

    # -- the request side: append and return -------------------------------------------

    def record(self, event: UsageEvent) -> None:
        """Queue one usage event; never touches the database (except in sync mode)."""
        self._put(event)

    def audit(self, action: str, **fields: Any) -> None:
        """Queue a trail.record(session, action, **fields) call for the next flush.

        The event keeps the time it happened (`at`), not the time it is written.
        """
        fields.setdefault("at", datetime.now(UTC))
        self._put(_Audit(action, fields))

    def _put(self, item: UsageEvent | _Audit) -> None:
        if self._pid != os.getpid():  # forked without the at-fork hook (should not happen)
            self._reset_process_state()
        if len(self._queue) >= self.queue_max:
            self.dropped += 1
            return
        self._queue.append(item)
        if self.mode == "sync":
            self.flush()
        elif self.mode == "thread":
            if not self._closed:
                self._worker.ensure_running()
            if len(self._queue) >= self.batch_max:
                self._worker.wake()

    # -- the writing side --------------------------------------------------------------

    def pending(self) -> int:
        """Items queued or waiting for a retry in this process."""
        return len(self._queue) + len(self._retry)

    def queued(self) -> tuple[int, int]:
        """(usage events, audit events) queued or waiting for a retry, for /metrics."""
        items = list(self._queue)  # one C-level copy: no thread can mutate it meanwhile
        retry = self._retry
        audits = sum(1 for item in items if isinstance(item, _Audit))
        return len(items) - audits + len(retry.events), audits + len(retry.audits)

    def flush(self) -> None:
        """Write everything queued now, in batches of at most USAGE_BATCH_MAX items.

        What arrives while a batch is being written waits for the next flush: taking it
        at once made a busy worker write a transaction per handful of events, back to
        back (160 commits a second under load, each paying the round trips and the
        roll-up upserts that one batch a second pays once). Raises nothing on a
        database outage: the batch stays queued and is retried.
        """
        with self._flush_lock:
            while True:
                batch = self._take()
                if not batch:
                    return
                if not self._write(batch):
                    self._retry = batch
                    return
                if len(batch) < self.batch_max and not batch.tried:
                    return  # else: a retried batch took nothing new; the queue's turn

    def _take(self) -> _Batch:
        batch, self._retry = self._retry, _Batch()
        if batch.tried:
            # Retried as it was: it may have been committed already (under its id), so
            # nothing new may join it, or that would be skipped with it.
            return batch
        while len(batch) < self.batch_max:
            try:
                item = self._queue.popleft()
            except IndexError:
                break
            if isinstance(item, _Audit):
                batch.audits.append(item)
            else:
                batch.events.append(item)
        return batch

    def _get_engine(self) -> Engine:
        if self._engine is None:
            with self.app.app_context():
                self._engine = db.engine
        return self._engine

    def _write(self, batch: _Batch) -> bool:
        """One transaction for the batch; False (keep it) when the database is unreachable.

        A batch the database refuses for another reason (a row or an audit field it
        will not take) is written again item by item, each in a savepoint, so one bad
        item cannot block the queue forever; refused items are logged and dropped.
        """
        started = time.perf_counter()
        try:
            engine = self._get_engine()
            with self.app.app_context():
                try:
                    touched = self._write_all(engine, batch, careful=False)
                except UNAVAILABLE:
                    raise
                except Exception:
                    log.exception("usage batch refused; writing it item by item")
                    touched = self._write_all(engine, batch, careful=True)
        except UNAVAILABLE:
            batch.tried = True  # its commit may have happened without an answer
            log.warning(
                "usage flush: database unavailable, keeping %d items for the next try",
                len(batch),
                exc_info=True,
            )
            metrics = self.app.extensions.get("keyledger.metrics")
            if metrics is not None:
                metrics.flush_failed()
            return False
        except Exception:
            log.exception("usage flush: dropping a batch of %d items", len(batch))
            return True
        self._last_used.update(touched)
        self.flushed += len(batch)
        metrics = self.app.extensions.get("keyledger.metrics")
        if metrics is not None:
            metrics.flushed(len(batch.events), len(batch.audits), time.perf_counter() - started)
        if self.dropped:
            log.error("usage queue was full: %d events dropped", self.dropped)
            self.dropped = 0
        log.debug(
            "usage flush: %d items in %.1f ms", len(batch), 1e3 * (time.perf_counter() - started)
        )
        return True

    def _write_all(
        self, engine: Engine, batch: _Batch, *, careful: bool
    ) -> dict[int, tuple[datetime, str | None]]:
        with Session(engine) as session, session.begin():
            if batch.tried and session.get(UsageBatch, batch.id) is not None:
                # The last attempt did commit; only its answer was lost.
                log.warning("usage flush: batch %s was written already", batch.id)
                return {}
            session.execute(insert(UsageBatch).values(id=batch.id, written_at=datetime.now(UTC)))
            self._prune_batch_ids(session)
            events = batch.events
            if careful:
                events = []
                for e in batch.events:
                    try:
                        with session.begin_nested():
                            row = dict(zip(store.EVENT_COLUMNS, store.event_row(e), strict=True))
                            session.execute(insert(UsageRecord), [row])
                        events.append(e)
                    except UNAVAILABLE:
                        raise
                    except Exception:
                        log.exception("dropping a usage event the database refused")
            elif events:
                store.insert_events(session.connection(), events, self._statements)
            touched = {}
            if events:
                rollups.add(session, events, self._statements)
                touched = self._touch_keys(session, events)
            self._append_audits(session, batch.audits, careful=careful)
        return touched

    def _prune_batch_ids(self, session: Session) -> None:
        """Forget written batches' ids after BATCH_ID_KEEP, at most once an hour per
        process: a retry comes within the outage, not a day later."""
        now = time.monotonic()
        if now < self._next_prune:
            return
        self._next_prune = now + 3600
        session.execute(
            delete(UsageBatch).where(UsageBatch.written_at < datetime.now(UTC) - BATCH_ID_KEEP)
        )

    def _touch_keys(
        self, session: Session, events: Iterable[UsageEvent]
    ) -> dict[int, tuple[datetime, str | None]]:
        """Set last_used_at/ip once per key per batch, and only when it moved a minute on.
        Refusals of the key (KEY_REFUSED) do not count as a use."""
        latest: dict[int, UsageEvent] = {}
        for e in events:
            if e.status in KEY_REFUSED:  # the key was refused, not used
                continue
            if e.key_id not in latest or e.at >= latest[e.key_id].at:
                latest[e.key_id] = e
        touched: dict[int, tuple[datetime, str | None]] = {}
        for key_id in sorted(latest):  # one lock order for every worker
            e = latest[key_id]
            seen = self._last_used.get(key_id)
            if seen and seen[1] == e.client_ip and e.at - seen[0] < LAST_USED_RESOLUTION:
                continue
            touched[key_id] = (e.at, e.client_ip)
        if touched:
            # One statement for the batch's keys, in that order (executemany: pipelined
            # on PostgreSQL), not one built and run per key.
            session.connection().execute(
                _TOUCH, [{"key": k, "at": at, "ip": ip} for k, (at, ip) in touched.items()]
            )
        return touched

    def _append_audits(self, session: Session, audits: list[_Audit], *, careful: bool) -> None:
        """Append the batch's audit events in this transaction, through app.audit.trail.

        Where the trail offers `build` (the row, not yet added), the whole batch goes in
        with one multi-row INSERT; otherwise trail.record is called per event.
        """
        from app.audit import trail

        build = getattr(trail, "build", None)
        if not audits:
            return
        if not careful and build is not None:
            session.add_all([build(item.action, **item.fields) for item in audits])
            session.flush()
            return
        for item in audits:
            if not careful:
                trail.record(session, item.action, **item.fields)
            else:
                try:
                    with session.begin_nested():
                        trail.record(session, item.action, **item.fields)
                except UNAVAILABLE:
                    raise
                except Exception:
                    log.exception("dropping an audit event the trail refused: %s", item.action)
            # Written already: keep the identity map small, or each ORM statement of
            # the next record() slows down with the batch size.
            session.flush()
            session.expunge_all()

    # -- shutdown ----------------------------------------------------------------------

    def shutdown(self, *, flush: bool = True, timeout: float = 10.0) -> None:
        """Stop the thread and write what is left (app/serve.py's worker exit, atexit)."""
        if self._pid != os.getpid():
            return
        self._closed = True
        self._worker.stop(timeout)
        if flush:
            try:
                self.flush()
            except Exception:
                log.exception("usage flush at shutdown failed")
        left = self.pending()
        if left:
            log.error("usage: %d items could not be written at shutdown", left)


# A key's last use, moved on only (an earlier batch retried late must not move it back).
_KEYS = ApiKey.__table__
_TOUCH = (
    update(_KEYS)
    .where(
        and_(
            _KEYS.c.id == bindparam("key"),
            or_(_KEYS.c.last_used_at.is_(None), _KEYS.c.last_used_at <= bindparam("at")),
        )
    )
    .values(last_used_at=bindparam("at"), last_used_ip=bindparam("ip"))
)


def shutdown_all() -> None:
    """Flush every recorder of this process (gunicorn hooks and atexit call it)."""
    for rec in list(_LIVE):
        rec.shutdown()


def _after_fork_in_child() -> None:
    for rec in list(_LIVE):
        if rec._engine is not None:
            # The parent's pooled connections are not ours to use (or to close).
            rec._engine.dispose(close=False)
        rec._reset_process_state()


_hooks_installed = False


def install_process_hooks() -> None:
    """Once per process, from init_app (never at import): a forked child resets every
    recorder it inherited, and a normal interpreter exit flushes them."""
    global _hooks_installed
    if _hooks_installed:
        return
    _hooks_installed = True
    os.register_at_fork(after_in_child=_after_fork_in_child)
    atexit.register(shutdown_all)
