"""Verify the whole log in the database, streaming, and compare it with the anchor.

For every sealed event: the stored bytes hash to the stored leaf hash, and every
column an admin sees is exactly what the bytes say (the bytes are rebuilt from the
columns and compared, which also proves them canonical). The tree is rebuilt from
the recomputed leaves, and every checkpoint is checked as its size is reached:
signature by a trusted key, contiguous index, link to its predecessor, and root equal
to the rebuilt one. Then the state row, then the anchor. Memory stays flat: one
frontier, one batch of rows, the previous checkpoint.

Events are read in seq ranges, and on big logs the per-event work (reading, leaf
hash, column checks: most of the cost) is split across worker processes, while this
process folds the returned leaf hashes into the tree in seq order and checks the
checkpoints. A range that is not exactly what an intact log gives (a gap, a
duplicate, any row the per-event check refuses) makes the whole check run again the
plain way, streaming the whole log in one process, so a damage report is the same
either way.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import multiprocessing
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, create_engine, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

from app.audit import offline
from app.audit.anchor import read_anchor
from app.audit.log import LogSettings
from app.audit.offline import CheckpointChain, Damage, Frontier, Report

BATCH = 5000
# Below this many events one process is quicker than starting workers.
PARALLEL_MIN = 200_000
CHUNK = 50_000
_SELECT = (
    "SELECT seq, leaf_hash, canonical, event_id, created_at, action, sensitivity, actor, "
    "actor_ip, target, outcome, details FROM audit_event "
)
_EVENT_SQL = _SELECT + "WHERE seq IS NOT NULL ORDER BY seq"
_RANGE_SQL = _SELECT + "WHERE seq >= :lo AND seq < :hi ORDER BY seq"
log = logging.getLogger(__name__)
_EVENT_ID_KEY = b',"event_id":'
_EVENT_ID_TEXT = ',"event_id":'
_CHECKPOINT_SQL = (
    "SELECT idx, tree_size, root_hash, created_at, key_id, note, signature "
    "FROM audit_checkpoint WHERE idx > :after ORDER BY idx LIMIT :n"
)
_COLUMNS = ("event_id", "action", "sensitivity", "actor", "actor_ip", "target", "outcome")

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
            return raw.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
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


def _stream_events(
    conn: Connection, span: tuple[int, int] | None = None
) -> Iterator[tuple[Any, ...]]:
    """Every sealed event (or those with lo <= seq < hi) as a plain tuple, in seq order,
    one batch in memory at a time. SQLite gets the driver's own cursor (it steps lazily
    and skips SQLAlchemy's result layer, which costs more than the rest of the check);
    others a server-side cursor."""
    sql = _EVENT_SQL if span is None else _RANGE_SQL
    params = {} if span is None else {"lo": span[0], "hi": span[1]}
    if conn.dialect.name == "sqlite":
        cursor = conn.connection.driver_connection.execute(sql, params)  # type: ignore[union-attr]
        while rows := cursor.fetchmany(BATCH):
            yield from rows
        return
    result = conn.execution_options(stream_results=True, max_row_buffer=BATCH).execute(
        text(sql), params
    )
    for part in result.partitions(BATCH):
        for row in part:
            yield tuple(row)


def _column_damage(row: tuple[Any, ...], data: bytes, time_text: str) -> Damage | None:
    """Slow path, used when the fast comparison is not conclusive: parse the bytes and
    compare each column; None when they all agree and the bytes are canonical."""
    seq = row[0]
    body, problem = offline.check_event_bytes(data)
    if body is None:
        return Damage("bytes_not_canonical", problem or "bad bytes", seq)
    columns = dict(zip(("event_id", "created_at", *_COLUMNS[1:], "details"), row[3:], strict=True))
    for name in _COLUMNS:
        if columns[name] != body[name]:
            return Damage("field_changed", f"column {name} differs from the hashed bytes", seq)
    if time_text != body["time"]:
        return Damage("field_changed", "column created_at differs from the hashed bytes", seq)
    details = columns["details"]
    if not isinstance(details, str) or details.encode() != offline.canonical_dumps(body["details"]):
        return Damage("field_changed", "column details differs from the hashed bytes", seq)
    return None


def _check_row(
    row: tuple[Any, ...], expected_seq: int, time_text: Callable[[Any], str], enc: Any, sha256: Any
) -> bytes:
    """One event's checks; returns its recomputed leaf hash or raises Damage."""
    seq, stored_leaf, data, event_id, created, action, sens, actor, ip, target, outcome, det = row
    if seq != expected_seq:
        if seq > expected_seq:
            raise Damage(
                "event_missing",
                f"event {expected_seq} is missing (the next stored event is {seq})",
                expected_seq,
            )
        raise Damage("malformed", f"event {seq} appears twice", seq)
    data = bytes(data)
    leaf = sha256(b"\x00" + data).digest()
    if leaf != bytes(stored_leaf):
        raise Damage("bytes_changed", "stored bytes do not match their leaf hash", seq)
    when = time_text(created)
    # Fast path: rebuild the canonical bytes from the columns. Every column but
    # details is a JSON string literal or null, so each is pinned by its quotes;
    # details is pinned by the one top-level `,"event_id":` that must follow it.
    expected = (
        f'{{"action":{enc(action)},"actor":{enc(actor)},"actor_ip":'
        f'{"null" if ip is None else enc(ip)},"details":{det},"event_id":{enc(event_id)},'
        f'"outcome":{enc(outcome)},"sensitivity":{enc(sens)},"target":'
        f'{"null" if target is None else enc(target)},"time":{enc(when)},"v":1}}'
    )
    if expected.encode() != data or data.count(_EVENT_ID_KEY) != 1:
        damage = _column_damage(row, data, when)
        if damage is not None:
            raise damage
    return leaf


def _checkpoint_from_row(row: Any, time_text: Callable[[Any], str]) -> offline.Checkpoint:
    try:
        cp = offline.load_checkpoint(bytes(row.note), bytes(row.signature))
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


def _worker_leaves(span: tuple[int, int]) -> tuple[int, bytes] | None:
    assert _worker_engine is not None
    with _worker_engine.connect() as conn:
        try:
            return _leaves_for(conn, span)
        finally:
            conn.rollback()


def _column_bytes(
    enc: Callable[[str], str],
    action: str,
    actor: str,
    ip: str | None,
    det: str,
    event_id: str,
    outcome: str,
    sens: str,
    target: str | None,
    when: str,
) -> bytes:
    """The canonical bytes the browsing columns imply (the common case, built with the
    C string encoder); equal to the stored bytes iff every column matches them."""
    return (
        f'{{"action":{enc(action)},"actor":{enc(actor)},"actor_ip":'
        f'{"null" if ip is None else enc(ip)},"details":{det},"event_id":'
        f'{enc(event_id)},"outcome":{enc(outcome)},"sensitivity":{enc(sens)},'
        f'"target":{"null" if target is None else enc(target)},"time":"{when}","v":1}}'
    ).encode()


def _leaves_for(conn: Connection, span: tuple[int, int]) -> tuple[int, bytes] | None:
    """Check the events with lo <= seq < hi. Returns (first seq, their leaf hashes
    concatenated) when the seqs run on without a gap and every event passes the full
    per-event check, else None."""
    sha256 = hashlib.sha256
    enc = encode_basestring
    time_text = _time_text(conn.dialect.name)
    out: list[bytes] = []
    add = out.append
    rows = _stream_events(conn, span)
    first = next(rows, None)
    if first is None:
        return (-1, b"")
    start = first[0]
    if not isinstance(start, int):
        return None
    expected = start
    # SQLite hands back created_at as text: slice it here rather than call time_text.
    raw_time = conn.dialect.name == "sqlite"
    for row in itertools.chain((first,), rows):
        seq, stored, data, event_id, created, action, sens, actor, ip, target, outcome, det = row
        try:
            leaf = sha256(b"\x00" + data).digest()
            when = f"{created[:10]}T{created[11:]}Z" if raw_time else time_text(created)
            ok = (
                seq == expected
                and leaf == stored
                and (len(created) == 26 if raw_time else True)
                and _column_bytes(
                    enc, action, actor, ip, det, event_id, outcome, sens, target, when
                )
                == data
                and _EVENT_ID_TEXT not in det
            )
        except (TypeError, ValueError, AttributeError, UnicodeError):
            ok = False
        if not ok:
            try:
                leaf = _check_row(row, expected, time_text, enc, sha256)
            except (Damage, TypeError, ValueError, AttributeError, UnicodeError):
                return None
        add(leaf)
        expected += 1
    return (start, b"".join(out))


def _chunk_leaves(conn: Connection, total: int, workers: int, chunk: int) -> Iterator[bytes]:
    """Leaf hashes of events 0..total-1 in seq order, one checked seq range at a time,
    from `workers` processes (0: this one). At most two ranges per worker are in
    flight, so memory stays flat however long the log. Raises _Dirty unless the
    ranges hold exactly seqs 0..total-1."""
    spans = ((lo, min(lo + chunk, total)) for lo in range(0, total, chunk))
    size = 0

    def take(result: tuple[int, bytes] | None) -> bytes:
        nonlocal size
        if result is None:
            raise _Dirty
        start, blob = result
        if blob and start != size:
            raise _Dirty
        size += len(blob) // 32
        return blob

    if workers == 0:
        for span in spans:
            yield take(_leaves_for(conn, span))
    else:
        ctx = multiprocessing.get_context("spawn")  # no fork: callers may run threads
        url = conn.engine.url.render_as_string(hide_password=False)
        with ctx.Pool(workers, initializer=_worker_start, initargs=(url,)) as pool:
            pending: deque[Any] = deque()
            for span in spans:
                pending.append(pool.apply_async(_worker_leaves, (span,)))
                if len(pending) >= 2 * workers:
                    break
            while pending:
                result = pending.popleft().get()
                span = next(spans, None)
                if span is not None:
                    pending.append(pool.apply_async(_worker_leaves, (span,)))
                yield take(result)
    if size != total:
        raise _Dirty


def verify_log(
    engine: Engine,
    settings: LogSettings,
    *,
    anchor_path: Path | None = None,
    progress: Progress | None = None,
    workers: int | None = None,
    chunk: int = CHUNK,
) -> Report:
    """Check everything; the report names the first damage found, or is ok.

    `workers` None picks one process per core for logs of PARALLEL_MIN events or more;
    0 checks in this process only."""
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
    total = conn.execute(text("SELECT count(*) FROM audit_event WHERE seq IS NOT NULL")).scalar()
    total = int(total or 0)
    if workers is None:
        cores = os.cpu_count() or 1
        workers = cores if cores > 1 and total >= PARALLEL_MIN else 0
    if conn.dialect.name == "sqlite" and conn.engine.url.database in (None, "", ":memory:"):
        workers = 0  # other processes cannot see this database
    lowest, highest = conn.execute(
        text("SELECT min(seq), max(seq) FROM audit_event WHERE seq IS NOT NULL")
    ).one()
    # The fast path only for the shape an intact log has: seqs 0..total-1. Anything
    # else is damage, which the seq-ordered check names exactly.
    if total and lowest == 0 and highest == total - 1:
        leaves = _chunk_leaves(conn, total, workers, max(1, chunk))
        try:
            _fold(conn, settings, rep, progress, total, leaves)
            return
        except _Dirty:
            log.info("audit verify: a range was not as expected; rechecking in seq order")
        except Damage:
            raise
        except Exception:  # e.g. no way to start processes here
            log.warning("audit verify by ranges failed; checking in seq order", exc_info=True)
        finally:
            leaves.close()  # type: ignore[attr-defined]
        rep.checkpoints = 0
        rep.last_checkpoint_time = None
        rep.notes.clear()
    _fold(conn, settings, rep, progress, total, None)


def _fold(
    conn: Connection,
    settings: LogSettings,
    rep: Report,
    progress: Progress | None,
    total: int,
    blobs: Iterator[bytes] | None,
) -> None:
    """Rebuild the tree and check checkpoints as their sizes are reached. With `blobs`
    the per-event checks were done by workers, which hand over the leaf hashes in seq
    order; without, every event is read and checked here."""
    time_text = _time_text(conn.dialect.name)
    chain = CheckpointChain(settings.trusted)
    frontier = Frontier()
    covered = 0
    checkpoints = (_checkpoint_from_row(r, time_text) for r in _rows(conn, _CHECKPOINT_SQL))
    cp = next(checkpoints, None)
    sha256 = hashlib.sha256

    def take_checkpoint(cp: offline.Checkpoint) -> None:
        nonlocal covered
        chain.add(cp)
        if cp.root != frontier.root():
            raise Damage(
                "root_mismatch",
                f"checkpoint {cp.index} signs a root that events {covered}..{cp.tree_size - 1} "
                "do not produce: one of them was changed, inserted, removed or reordered",
                covered,
            )
        covered = cp.tree_size
        rep.checkpoints += 1
        rep.last_checkpoint_time = cp.time

    def reached(size: int) -> int:
        """Check every checkpoint of this size; the size of the next one (or -1)."""
        nonlocal cp
        frontier.size = size
        while cp is not None and cp.tree_size <= size:
            if cp.tree_size < size:
                raise Damage(
                    "checkpoint_inconsistent",
                    f"checkpoint {cp.index} is out of order (covers {cp.tree_size} events)",
                    cp.tree_size,
                )
            take_checkpoint(cp)
            cp = next(checkpoints, None)
        return cp.tree_size if cp is not None else -1

    while cp is not None and cp.tree_size == 0:
        take_checkpoint(cp)
        cp = next(checkpoints, None)
    enc = encode_basestring
    size = 0
    hashes = frontier.hashes
    pop = hashes.pop
    push = hashes.append
    next_size = cp.tree_size if cp is not None else -1
    if blobs is not None:
        for blob in blobs:
            for i in range(0, len(blob), 32):
                h = blob[i : i + 32]
                s = size
                while s & 1:
                    h = sha256(b"\x01" + pop() + h).digest()
                    s >>= 1
                push(h)
                size += 1
                if size == next_size:
                    next_size = reached(size)
            if progress is not None:
                progress(size, total)
    else:
        for row in _stream_events(conn):
            # The common case inline (this loop is the verify rate); anything unusual
            # goes through _check_row, which names the damage or accepts the row.
            seq, stored, data, event_id, created, action, sens, actor, ip, target, outcome, det = (
                row
            )
            try:
                leaf = sha256(b"\x00" + data).digest()
                when = time_text(created)
                ok = (
                    seq == size
                    and leaf == stored
                    and _column_bytes(
                        enc, action, actor, ip, det, event_id, outcome, sens, target, when
                    )
                    == data
                    and _EVENT_ID_TEXT not in det
                )
            except (TypeError, ValueError, AttributeError, UnicodeError):
                ok = False
            if not ok:
                try:
                    leaf = _check_row(row, size, time_text, enc, sha256)
                except (TypeError, ValueError, AttributeError, UnicodeError):
                    raise Damage(
                        "malformed", f"event {size} has a column of the wrong type", size
                    ) from None
            h = leaf
            s = size
            while s & 1:
                h = sha256(b"\x01" + pop() + h).digest()
                s >>= 1
            push(h)
            size += 1
            if size == next_size:
                next_size = reached(size)
            if progress is not None and size % 50000 == 0:
                progress(size, total)
    frontier.size = size
    if cp is not None:
        chain.add(cp)
        raise Damage(
            "tail_missing",
            f"checkpoint {cp.index} covers {cp.tree_size} events but the log ends after "
            f"{frontier.size}: events {frontier.size}..{cp.tree_size - 1} were deleted",
            frontier.size,
        )
    if frontier.size > covered:
        raise Damage(
            "event_uncovered",
            f"events {covered}..{frontier.size - 1} are not covered by any signed checkpoint "
            "(inserted after sealing?)",
            covered,
        )
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
    rep.tree_size = frontier.size
    rep.root = frontier.root()


def _check_anchor(conn: Connection, settings: LogSettings, path: Path, rep: Report) -> None:
    """Every anchored checkpoint must be in the database, byte for byte."""
    if not path.exists():
        if rep.checkpoints:
            rep.notes.append(f"anchor {path} not found: a rollback would go unnoticed")
        return
    newest = conn.execute(text("SELECT max(idx) FROM audit_checkpoint")).scalar()
    newest = -1 if newest is None else int(newest)
    matched = 0
    batch: list[tuple[int, offline.Checkpoint]] = []

    def flush() -> None:
        nonlocal matched
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
            matched += 1
        batch.clear()

    for number, item in read_anchor(path):
        if isinstance(item, str):
            raise Damage("anchor_invalid", f"anchor line {number}: {item}")
        problem = offline.signature_problem(item, settings.trusted)
        if problem:
            raise Damage("anchor_invalid", f"anchor line {number}: {problem[1]}")
        batch.append((number, item))
        if len(batch) >= 500:
            flush()
    flush()
    if matched < rep.checkpoints:
        rep.notes.append(f"{rep.checkpoints - matched} checkpoints not in the anchor")


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
        }
    )
