"""Verify the whole log in the database, streaming, and compare it with the anchor.

For every sealed event: the stored bytes hash to the stored leaf hash, and every
column an admin sees is exactly what the bytes say (the bytes are rebuilt from the
columns and compared, which also proves them canonical). The tree is rebuilt from
the recomputed leaves, and every checkpoint is checked as its size is reached:
signature by a trusted key, contiguous index, link to its predecessor, and root equal
to the rebuilt one. Then the state row, then the anchor. Memory stays flat: one
frontier, one batch of rows, the previous checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.engine import Connection, Engine

from app.audit import offline
from app.audit.anchor import read_anchor
from app.audit.log import LogSettings
from app.audit.offline import CheckpointChain, Damage, Frontier, Report

BATCH = 5000
_EVENT_SQL = (
    "SELECT seq, leaf_hash, canonical, event_id, created_at, action, sensitivity, actor, "
    "actor_ip, target, outcome, details FROM audit_event WHERE seq IS NOT NULL ORDER BY seq"
)
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


def _stream_events(conn: Connection) -> Iterator[tuple[Any, ...]]:
    """Every sealed event as a plain tuple, in seq order, one batch in memory at a time.
    SQLite gets the driver's own cursor (it steps lazily and skips SQLAlchemy's result
    layer, which costs more than the rest of the check); others a server-side cursor."""
    if conn.dialect.name == "sqlite":
        cursor = conn.connection.driver_connection.execute(_EVENT_SQL)  # type: ignore[union-attr]
        while rows := cursor.fetchmany(BATCH):
            yield from rows
        return
    result = conn.execution_options(stream_results=True, max_row_buffer=BATCH).exec_driver_sql(
        _EVENT_SQL
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


def verify_log(
    engine: Engine,
    settings: LogSettings,
    *,
    anchor_path: Path | None = None,
    progress: Progress | None = None,
) -> Report:
    """Check everything; the report names the first damage found, or is ok."""
    started = time.perf_counter()
    report = Report(ok=False)
    try:
        with engine.connect() as conn:
            _verify(conn, settings, report, progress)
            if anchor_path is not None:
                _check_anchor(conn, settings, anchor_path, report)
            conn.rollback()
        report.ok = True
    except Damage as damage:
        report.damage = damage
    report.seconds = time.perf_counter() - started
    return report


def _verify(
    conn: Connection, settings: LogSettings, rep: Report, progress: Progress | None
) -> None:
    time_text = _time_text(conn.dialect.name)
    total = conn.execute(text("SELECT count(*) FROM audit_event WHERE seq IS NOT NULL")).scalar()
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

    while cp is not None and cp.tree_size == 0:
        take_checkpoint(cp)
        cp = next(checkpoints, None)
    enc = encode_basestring
    size = 0
    hashes = frontier.hashes
    next_size = cp.tree_size if cp is not None else -1
    for row in _stream_events(conn):
        # The common case inline (this loop is the verify rate); anything unusual goes
        # through _check_row, which names the damage or accepts the row.
        seq, stored, data, event_id, created, action, sens, actor, ip, target, outcome, det = row
        try:
            leaf = sha256(b"\x00" + data).digest()
            ok = (
                seq == size
                and leaf == stored
                and f'{{"action":{enc(action)},"actor":{enc(actor)},"actor_ip":'
                f'{"null" if ip is None else enc(ip)},"details":{det},"event_id":'
                f'{enc(event_id)},"outcome":{enc(outcome)},"sensitivity":{enc(sens)},"target":'
                f'{"null" if target is None else enc(target)},"time":"{time_text(created)}",'
                '"v":1}'.encode()
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
            h = sha256(b"\x01" + hashes.pop() + h).digest()
            s >>= 1
        hashes.append(h)
        size += 1
        if size == next_size:
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
            next_size = cp.tree_size if cp is not None else -1
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
