"""Verify the whole log in the database, streaming, and compare it with the anchor.

The checks are app.audit.core's: for every sealed event `core.event_leaf` (the stored
bytes hash to the stored leaf hash, and every column an admin sees is exactly what
the bytes say), and `core.Fold` rebuilds the tree and checks every checkpoint as its
size is reached. This module only reads rows: events in seq ranges, checkpoints in
index order, the state row and the anchor. Memory stays flat.

On big logs the per-event work (reading, leaf hash, column checks: most of the cost)
is split across worker processes; this process folds the returned leaf hashes in seq
order. A range that is not exactly what an intact log gives makes the check run
again in seq order in one process, so a damage report is the same either way.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, create_engine, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

from app import dialects
from app.audit import core
from app.audit.anchor import read_anchor
from app.audit.core import Damage, Report
from app.audit.core.parallel import ordered_map, usable_cores
from app.audit.log import LogSettings

BATCH = 5000
# Below this many events one process is quicker than starting workers.
PARALLEL_MIN = 400_000
CHUNK = 50_000
_SELECT = (
    "SELECT seq, leaf_hash, canonical, event_id, created_at, action, sensitivity, actor, "
    "actor_ip, target, outcome, details FROM audit_event "
)
_EVENT_SQL = _SELECT + "WHERE seq IS NOT NULL ORDER BY seq"
_RANGE_SQL = _SELECT + "WHERE seq >= :lo AND seq < :hi ORDER BY seq"
log = logging.getLogger(__name__)
_CHECKPOINT_SQL = (
    "SELECT idx, tree_size, root_hash, created_at, key_id, note, signature "
    "FROM audit_checkpoint WHERE idx > :after ORDER BY idx LIMIT :n"
)

Progress = Callable[[int, int], None]


def _time_text(dialect: str) -> Callable[[Any], str]:
    """The canonical time text of a raw created_at value, per driver."""
    if dialect == "sqlite":
        # SQLAlchemy stores "YYYY-MM-DD HH:MM:SS.ffffff" (UTC) on SQLite.
        def sqlite_time(raw: Any) -> str:
            if isinstance(raw, str) and len(raw) == 26:
                return f"{raw[:10]}T{raw[11:]}Z"
            return f"<{raw!r}>"

        return sqlite_time

    def aware_time(raw: Any) -> str:
        if isinstance(raw, datetime) and raw.tzinfo is not None:
            return core.format_time(raw)
        return f"<{raw!r}>"

    return aware_time


def _rows(conn: Connection, sql: str, batch: int = BATCH) -> Iterator[Any]:
    after = -1
    while True:
        rows = conn.execute(text(sql), {"after": after, "n": batch}).all()
        if not rows:
            return
        yield from rows
        after = rows[-1][0]


def _event_batches(
    conn: Connection, span: tuple[int, int] | None = None
) -> Iterator[list[tuple[Any, ...]]]:
    """Every sealed event (or those with lo <= seq < hi) as plain tuples, in seq order,
    a batch at a time (memory stays flat). SQLite gets the driver's own cursor (it
    steps lazily and skips SQLAlchemy's result layer, which costs more than the rest
    of the check); others a server-side cursor."""
    sql = _EVENT_SQL if span is None else _RANGE_SQL
    params = {} if span is None else {"lo": span[0], "hi": span[1]}
    if dialects.name_of(conn) == "sqlite":
        cursor = conn.connection.driver_connection.execute(sql, params)  # type: ignore[union-attr]
        while rows := cursor.fetchmany(BATCH):
            yield rows
        return
    result = conn.execution_options(stream_results=True, max_row_buffer=BATCH).execute(
        text(sql), params
    )
    for part in result.partitions(BATCH):
        yield [tuple(row) for row in part]


def _stream_events(
    conn: Connection, span: tuple[int, int] | None = None
) -> Iterator[tuple[Any, ...]]:
    for rows in _event_batches(conn, span):
        yield from rows


def _checkpoint_from_row(row: Any, time_text: Callable[[Any], str]) -> core.Checkpoint:
    try:
        cp = core.load_checkpoint(bytes(row.note), bytes(row.signature), row.key_id)
    except ValueError as exc:
        raise Damage("malformed", f"checkpoint {row.idx}: {exc}") from None
    if (
        cp.index != row.idx
        or cp.tree_size != row.tree_size
        or cp.root != bytes(row.root_hash)
        or cp.key_id != row.key_id
        or cp.time != time_text(row.created_at)
    ):
        raise Damage(
            "field_changed",
            f"checkpoint {row.idx}'s columns differ from its signed note",
            cp.tree_size,
        )
    return cp


class _Dirty(Exception):
    """A chunk was not what an intact log gives: rerun in seq order to name the damage."""


_worker_engine: Engine | None = None


def _worker_start(url: str) -> None:
    global _worker_engine
    _worker_engine = create_engine(url, poolclass=NullPool)


def _worker_leaves(span: tuple[int, int]) -> tuple[int, bytes, int] | None:
    assert _worker_engine is not None
    with _worker_engine.connect() as conn:
        try:
            return _leaves_for(conn, span)
        finally:
            conn.rollback()


def _leaves_for(conn: Connection, span: tuple[int, int]) -> tuple[int, bytes, int] | None:
    """Check the events with lo <= seq < hi. Returns (first seq, their leaf hashes
    concatenated, pruned count) when the seqs run on without a gap and every event
    passes `core.event_leaf`, else None."""
    sha256 = hashlib.sha256
    column_bytes = core.column_bytes
    marker = core.EVENT_ID_TEXT
    time_text = _time_text(dialects.name_of(conn))
    out: list[bytes] = []
    add = out.append
    start = expected = -1
    pruned = 0
    # SQLite hands back created_at as text: slice it here rather than call time_text.
    raw_time = dialects.name_of(conn) == "sqlite"
    for rows in _event_batches(conn, span):
        if start < 0:
            start = expected = rows[0][0]
            if not isinstance(start, int):
                return None
        for row in rows:
            seq, stored, data, event_id, created, action, sens, actor, ip, target, outcome, det = (
                row
            )
            # The common case inline (this loop is the verify rate); anything unusual
            # goes through core.event_leaf, which names the damage or accepts the row.
            try:
                leaf = sha256(b"\x00" + data).digest()
                when = f"{created[:10]}T{created[11:]}Z" if raw_time else time_text(created)
                ok = (
                    seq == expected
                    and leaf == stored
                    and (len(created) == 26 if raw_time else True)
                    and column_bytes(action, actor, ip, det, event_id, outcome, sens, target, when)
                    == data
                    and marker not in det
                )
            except (TypeError, ValueError, AttributeError, UnicodeError):
                ok = False
            if not ok:
                try:
                    leaf = core.event_leaf(row, expected, time_text(created))
                except (Damage, TypeError, ValueError, AttributeError, UnicodeError):
                    return None
                pruned += data is None
            add(leaf)
            expected += 1
    if start < 0:
        return (-1, b"", 0)
    return (start, b"".join(out), pruned)


class _Leaves:
    """Leaf hashes of events 0..total-1 in seq order, one checked seq range at a time,
    from `workers` processes (0: this one). At most two ranges per worker are in
    flight, so memory stays flat however long the log. Raises _Dirty unless the
    ranges hold exactly seqs 0..total-1."""

    def __init__(self, conn: Connection, total: int, workers: int, chunk: int) -> None:
        self.conn, self.total, self.workers, self.chunk = conn, total, workers, chunk
        self.pruned = 0

    def __iter__(self) -> Iterator[bytes]:
        total, chunk, workers = self.total, self.chunk, self.workers
        spans = ((lo, min(lo + chunk, total)) for lo in range(0, total, chunk))
        size = 0

        def take(result: tuple[int, bytes, int] | None) -> bytes:
            nonlocal size
            if result is None:
                raise _Dirty
            start, blob, pruned = result
            if blob and start != size:
                raise _Dirty
            size += len(blob) // 32
            self.pruned += pruned
            return blob

        if workers == 0:
            for span in spans:
                yield take(_leaves_for(self.conn, span))
        else:
            url = self.conn.engine.url.render_as_string(hide_password=False)
            results = ordered_map(
                _worker_leaves,
                ((span,) for span in spans),
                workers,
                initializer=_worker_start,
                initargs=(url,),
            )
            with contextlib.closing(results):  # on damage: wait for the workers here
                for result in results:
                    yield take(result)
        if size != total:
            raise _Dirty


def _ordered_leaves(conn: Connection, counter: list[int]) -> Iterator[bytes]:
    """Every sealed event in seq order through `core.event_leaf`: names the first damage."""
    time_text = _time_text(dialects.name_of(conn))
    out: list[bytes] = []
    for size, row in enumerate(_stream_events(conn)):
        try:
            out.append(core.event_leaf(row, size, time_text(row[4])))
        except (TypeError, ValueError, AttributeError, UnicodeError):
            raise Damage(
                "malformed", f"event {size} has a column of the wrong type", size
            ) from None
        counter[0] += row[2] is None
        if len(out) >= BATCH:
            yield b"".join(out)
            out.clear()
    if out:
        yield b"".join(out)


def auto_workers(total: int) -> int:
    """Worker processes for a log of `total` events: one per core on big logs, whatever
    the load. Workers are forked from a server that imported the verifier once, so they
    start at once, and on a busy machine two of them get more of the cores than one
    process does."""
    cores = usable_cores()
    return cores if cores >= 2 and total >= PARALLEL_MIN else 0


def verify_log(
    engine: Engine,
    settings: LogSettings,
    *,
    anchor_path: Path | None = None,
    progress: Progress | None = None,
    workers: int | None = None,
    chunk: int = CHUNK,
    stale_after: float | None = None,
) -> Report:
    """Check everything; the report names the first damage found, or is ok.

    `workers` None picks `auto_workers`; 0 checks in this process only. Warnings
    (a stale newest checkpoint, an anchor behind the database, a halted sealer) go
    to report.warnings."""
    started = time.perf_counter()
    report = Report(ok=False)
    try:
        with engine.connect() as conn:
            _verify(conn, settings, report, progress, workers, chunk)
            if anchor_path is not None:
                _check_anchor(conn, settings, anchor_path, report)
            conn.rollback()
        report.ok = True
    except Damage as damage:
        report.damage = damage
    with engine.connect() as conn:
        stopped = _monitor(conn, settings, report, stale_after)
        conn.rollback()
    if stopped and report.ok:
        # Intact but refusing to sign: not a state to call healthy (fail closed).
        report.ok = False
        report.damage = Damage(
            "halted",
            f"the sealer is halted (fork protection), nothing is signed until "
            f"`flask audit recover`: {stopped}",
        )
    report.seconds = time.perf_counter() - started
    return report


def _verify(
    conn: Connection,
    settings: LogSettings,
    rep: Report,
    progress: Progress | None,
    workers: int | None = None,
    chunk: int = CHUNK,
) -> None:
    total, lowest, highest = conn.execute(
        text("SELECT count(*), min(seq), max(seq) FROM audit_event WHERE seq IS NOT NULL")
    ).one()
    total = int(total or 0)
    if workers is None:
        workers = auto_workers(total)
    if dialects.name_of(conn) == "sqlite" and conn.engine.url.database in (None, "", ":memory:"):
        workers = 0  # other processes cannot see this database
    # The ranged path only for the shape an intact log has: seqs 0..total-1. Anything
    # else is damage, which the seq-ordered check names exactly.
    if total and lowest == 0 and highest == total - 1:
        leaves = _Leaves(conn, total, workers, max(1, chunk))
        try:
            _fold(conn, settings, rep, progress, total, leaves)
            rep.pruned = leaves.pruned
            return
        except _Dirty:
            log.info("audit verify: a range was not as expected; rechecking in seq order")
        except Damage:
            raise
        except Exception:  # e.g. no way to start processes here
            log.warning("audit verify by ranges failed; checking in seq order", exc_info=True)
        rep.notes.clear()
    counter = [0]
    _fold(conn, settings, rep, progress, total, _ordered_leaves(conn, counter))
    rep.pruned = counter[0]


def _fold(
    conn: Connection,
    settings: LogSettings,
    rep: Report,
    progress: Progress | None,
    total: int,
    blobs: Any,
) -> None:
    """The one fold (core.fold_blobs) over the checked leaf hashes and the stored
    checkpoints, then the state row."""
    time_text = _time_text(dialects.name_of(conn))
    checkpoints = (_checkpoint_from_row(r, time_text) for r in _rows(conn, _CHECKPOINT_SQL))
    fold = core.Fold(settings.trusted, origin=None)
    left = core.fold_blobs(
        fold,
        blobs,
        checkpoints,
        None if progress is None else (lambda size: progress(size, total)),
    )
    if left is not None:
        fold.chain.add(left)
        raise Damage(
            "tail_missing",
            f"checkpoint {left.index} covers {left.tree_size} events but the log ends after "
            f"{fold.size}: events {fold.size}..{left.tree_size - 1} were deleted",
            fold.size,
        )
    fold.finish(rep, need_checkpoint=False)
    frontier = fold.frontier
    state = conn.execute(text("SELECT size, root, frontier FROM audit_state WHERE id = 1")).first()
    if state is not None and (
        state.size != frontier.size
        or bytes(state.root) != frontier.root()
        or bytes(state.frontier) != frontier.to_bytes()
    ):
        raise Damage(
            "state_mismatch",
            f"the tree state row records {state.size} events and a different root",
            min(int(state.size), frontier.size),
        )
    pending = conn.execute(text("SELECT count(*) FROM audit_event WHERE seq IS NULL")).scalar()
    if pending:
        rep.notes.append(f"{pending} events waiting to be sealed")
    if progress is not None:
        progress(frontier.size, total)
    rep.events = frontier.size


def _check_anchor(conn: Connection, settings: LogSettings, path: Path, rep: Report) -> None:
    """Every anchored checkpoint must be in the database, byte for byte."""
    if not path.exists():
        if rep.checkpoints:
            rep.notes.append(f"anchor {path} not found: a rollback would go unnoticed")
        return
    newest = conn.execute(text("SELECT max(idx) FROM audit_checkpoint")).scalar()
    newest = -1 if newest is None else int(newest)
    matched: set[int] = set()
    batch: list[tuple[int, core.Checkpoint]] = []
    anchored_newest = -1
    lost: set[tuple[int, str]] = set()  # cosignatures the anchor holds, the database not

    def flush() -> None:
        if not batch:
            return
        wanted = sorted({cp.index for _, cp in batch})
        rows = conn.execute(
            text("SELECT idx, note, signature FROM audit_checkpoint WHERE idx IN :ids").bindparams(
                bindparam("ids", expanding=True)
            ),
            {"ids": wanted},
        ).all()
        stored = {r.idx: (bytes(r.note), bytes(r.signature)) for r in rows}
        cosigned = [cp.index for _, cp in batch if cp.cosignatures]
        have: set[tuple[int, str]] = set()
        if cosigned:
            have = {
                (r.checkpoint_idx, r.witness)
                for r in conn.execute(
                    text(
                        "SELECT checkpoint_idx, witness FROM audit_cosignature "
                        "WHERE checkpoint_idx IN :ids"
                    ).bindparams(bindparam("ids", expanding=True)),
                    {"ids": sorted(set(cosigned))},
                )
            }
        for number, cp in batch:
            if cp.index not in stored:
                if cp.index > newest:
                    raise Damage(
                        "rolled_back",
                        f"the anchor holds checkpoint {cp.index} ({cp.tree_size} events, "
                        f"{cp.time}) but the database's newest is checkpoint {newest}: the "
                        "database was restored from an older copy or checkpoints were deleted",
                        min(cp.tree_size, rep.tree_size),
                    )
                raise Damage(
                    "checkpoint_missing",
                    f"anchored checkpoint {cp.index} is missing from the database",
                    cp.tree_size,
                )
            if stored[cp.index] != (cp.note, cp.signature):
                raise Damage(
                    "anchor_mismatch",
                    f"checkpoint {cp.index} differs from the anchored copy (anchor line {number})",
                    cp.tree_size,
                )
            matched.add(cp.index)
            for name in core.valid_cosigners(cp, settings.trusted):
                if (cp.index, name) not in have:
                    lost.add((cp.index, name))
        batch.clear()

    for number, item in read_anchor(path):
        if isinstance(item, str):
            raise Damage("anchor_invalid", f"anchor line {number}: {item}")
        settings.trusted.set_origin(item.origin)
        problem = core.signature_problem(item, settings.trusted)
        if problem:
            raise Damage("anchor_invalid", f"anchor line {number}: {problem[1]}")
        anchored_newest = max(anchored_newest, item.index)
        batch.append((number, item))
        if len(batch) >= 500:
            flush()
    flush()
    if lost:
        rep.warnings.append(
            f"{len(lost)} witness cosignatures in the anchor are missing from the database "
            f"(first: checkpoint {min(lost)[0]} by {min(lost)[1]}); `flask audit recover` "
            "restores them"
        )
    if len(matched) < rep.checkpoints:
        missing = rep.checkpoints - len(matched)
        rep.notes.append(f"{missing} checkpoints not in the anchor")
        if anchored_newest < newest:
            rep.warnings.append(
                f"the anchor lags the database: its newest is checkpoint {anchored_newest}, "
                f"the database's {newest}"
            )


def _monitor(
    conn: Connection, settings: LogSettings, rep: Report, stale_after: float | None
) -> str | None:
    """Warnings: a halted sealer (returned, the caller fails on it), a stale newest
    checkpoint."""
    halted = conn.execute(text("SELECT halted FROM audit_state WHERE id = 1")).scalar()
    if halted:
        rep.warnings.append(f"the sealer is HALTED (fork protection): {halted}")
    if stale_after is None:
        stale_after = 2 * settings.checkpoint_interval
    if rep.last_checkpoint_time is not None:
        age = datetime.now(UTC) - core.parse_time(rep.last_checkpoint_time)
        if age > timedelta(seconds=stale_after):
            rep.warnings.append(
                f"the newest checkpoint is {int(age.total_seconds())}s old (more than twice "
                f"the {int(settings.checkpoint_interval)}s checkpoint interval): "
                "is the sealer running?"
            )
    return halted or None


def report_json(rep: Report) -> str:
    return json.dumps(
        {
            "ok": rep.ok,
            "events": rep.events,
            "checkpoints": rep.checkpoints,
            "root": rep.root.hex(),
            "seconds": round(rep.seconds, 3),
            "bad_seq": rep.damage.seq if rep.damage else None,
            "kind": rep.damage.kind if rep.damage else None,
            "problem": rep.damage.message if rep.damage else None,
            "warnings": rep.warnings,
        }
    )
