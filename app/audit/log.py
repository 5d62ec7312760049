"""The Merkle log: sealing pending events, signed checkpoints, inclusion proofs, export.

Request handlers only insert events (seq NULL). `seal` is the single integrator: it
takes one lock on the audit_state row (`SELECT ... FOR UPDATE` on PostgreSQL,
`BEGIN IMMEDIATE` on SQLite), gives the oldest pending events the next contiguous
sequence numbers, extends the RFC 6962 tree from the frontier kept in that row
(O(batch log n), no old leaf is read) and signs a checkpoint in the same transaction.
Works on an Engine and plain connections; no Flask request objects.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import bindparam, insert, select, text, update
from sqlalchemy.engine import Connection, Engine

from app.audit import offline
from app.audit.anchor import Anchor
from app.audit.canonical import format_time
from app.audit.offline import Checkpoint, Frontier, node_hash
from app.audit.signing import Signer
from app.models import AuditCheckpoint, AuditEvent, AuditNode, AuditState

NODE_MIN_LEVEL = 8
CHUNK = 1 << NODE_MIN_LEVEL

events_t = AuditEvent.__table__
state_t = AuditState.__table__
checkpoint_t = AuditCheckpoint.__table__
node_t = AuditNode.__table__


class LogError(RuntimeError):
    """The log cannot answer (an event or checkpoint it needs is missing)."""


@dataclass(frozen=True)
class LogSettings:
    origin: str
    signer: Signer
    trusted: dict[str, Ed25519PublicKey]
    anchor: Anchor
    checkpoint_interval: float = 300.0
    batch: int = 5000


@dataclass(frozen=True)
class SealResult:
    sealed: int
    size: int
    checkpoint: Checkpoint | None


def _lock_state(conn: Connection) -> tuple[int, bytes]:
    """Take the one lock every sealer serialises on; create the row if missing (tests
    truncate tables). Returns (size, frontier)."""
    empty = {"r": offline.EMPTY_ROOT, "f": b""}
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        conn.execute(
            text("INSERT OR IGNORE INTO audit_state (id, size, root, frontier) VALUES (1,0,:r,:f)"),
            empty,
        )
    elif conn.dialect.name == "postgresql":
        conn.execute(
            text(
                "INSERT INTO audit_state (id, size, root, frontier) VALUES (1, 0, :r, :f) "
                "ON CONFLICT (id) DO NOTHING"
            ),
            empty,
        )
        conn.commit()
    row = conn.execute(
        select(state_t.c.size, state_t.c.frontier).where(state_t.c.id == 1).with_for_update()
    ).one()
    return int(row.size), bytes(row.frontier)


def latest_checkpoint(conn: Connection) -> Checkpoint | None:
    row = conn.execute(
        select(checkpoint_t.c.note, checkpoint_t.c.signature)
        .order_by(checkpoint_t.c.idx.desc())
        .limit(1)
    ).first()
    return offline.load_checkpoint(bytes(row.note), bytes(row.signature)) if row else None


def _needs_work(conn: Connection, settings: LogSettings, now: datetime) -> bool:
    """A lock-free look: anything pending, or the last checkpoint too old?"""
    pending = conn.execute(select(events_t.c.id).where(events_t.c.seq.is_(None)).limit(1)).first()
    if pending is not None:
        return True
    last = conn.execute(
        select(checkpoint_t.c.created_at, checkpoint_t.c.tree_size)
        .order_by(checkpoint_t.c.idx.desc())
        .limit(1)
    ).first()
    if last is None:
        return True
    size = conn.execute(select(state_t.c.size).where(state_t.c.id == 1)).scalar()
    if size is not None and size != last.tree_size:
        return True
    return now - last.created_at >= timedelta(seconds=settings.checkpoint_interval)


def _make_checkpoint(
    conn: Connection, settings: LogSettings, size: int, root: bytes, now: datetime
) -> Checkpoint:
    prev = latest_checkpoint(conn)
    index = prev.index + 1 if prev else 0
    when = format_time(now)
    if prev is not None and when < prev.time:
        when = prev.time  # a clock stepping back must not break the chain's order
    note = offline.format_note(
        settings.origin,
        size,
        root,
        index,
        when,
        settings.signer.key_id,
        prev.digest if prev else offline.ZERO_HASH,
    )
    cp = offline.load_checkpoint(note, settings.signer.sign(note))
    conn.execute(
        insert(checkpoint_t).values(
            idx=cp.index,
            tree_size=size,
            root_hash=root,
            created_at=datetime.strptime(when, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC),
            key_id=cp.key_id,
            note=note,
            signature=cp.signature,
        )
    )
    return cp


def seal(engine: Engine, settings: LogSettings, *, force_checkpoint: bool = False) -> SealResult:
    """Seal one batch of pending events and sign a checkpoint when anything was sealed,
    when forced, or when the last checkpoint is older than the checkpoint interval."""
    now = datetime.now(UTC)
    with engine.connect() as conn:
        if not force_checkpoint and not _needs_work(conn, settings, now):
            conn.rollback()
            return SealResult(0, -1, None)
        conn.rollback()
        size, blob = _lock_state(conn)
        nodes: list[dict[str, Any]] = []
        frontier = Frontier.from_bytes(
            size,
            blob,
            on_node=lambda level, idx, h: nodes.append({"level": level, "idx": idx, "hash": h}),
            min_level=NODE_MIN_LEVEL,
        )
        pending = conn.execute(
            select(events_t.c.id, events_t.c.leaf_hash)
            .where(events_t.c.seq.is_(None))
            .order_by(events_t.c.id)
            .limit(settings.batch)
        ).all()
        assignments = []
        for row in pending:
            assignments.append({"b_id": row.id, "b_seq": frontier.size})
            frontier.append(bytes(row.leaf_hash))
        if assignments:
            conn.execute(
                update(events_t)
                .where(events_t.c.id == bindparam("b_id"))
                .values(seq=bindparam("b_seq")),
                assignments,
            )
        if nodes:
            conn.execute(insert(node_t), nodes)
        root = frontier.root()
        conn.execute(
            update(state_t)
            .where(state_t.c.id == 1)
            .values(size=frontier.size, root=root, frontier=frontier.to_bytes())
        )
        last = latest_checkpoint(conn)
        cp = None
        if (
            assignments
            or force_checkpoint
            or last is None
            or last.tree_size != frontier.size
            or now - datetime.strptime(last.time, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
            >= timedelta(seconds=settings.checkpoint_interval)
        ):
            cp = _make_checkpoint(conn, settings, frontier.size, root, now)
        conn.commit()
    if cp is not None:
        settings.anchor.append(cp)
    return SealResult(len(assignments), frontier.size, cp)


def seal_all(engine: Engine, settings: LogSettings, *, force_checkpoint: bool = False) -> int:
    """Seal until nothing is pending; returns how many events were sealed."""
    total = 0
    while True:
        result = seal(engine, settings, force_checkpoint=force_checkpoint)
        total += result.sealed
        if result.sealed < settings.batch:
            return total
        force_checkpoint = False


# --------------------------------------------------------------------------- proofs


class TreeReader:
    """Subtree hashes for proofs: cached nodes (256 leaves and up) plus at most one
    256-leaf chunk of leaves per level of the path, so a proof reads O(log n) rows."""

    def __init__(self, conn: Connection, size: int) -> None:
        self.conn = conn
        self.size = size
        self._chunks: dict[int, list[bytes]] = {}

    def _chunk(self, number: int) -> list[bytes]:
        if number not in self._chunks:
            lo = number * CHUNK
            hi = min(lo + CHUNK, self.size)
            rows = self.conn.execute(
                select(events_t.c.seq, events_t.c.leaf_hash)
                .where(events_t.c.seq >= lo, events_t.c.seq < hi)
                .order_by(events_t.c.seq)
            ).all()
            if [r.seq for r in rows] != list(range(lo, hi)):
                raise LogError(f"events {lo}..{hi - 1} are not all present")
            self._chunks[number] = [bytes(r.leaf_hash) for r in rows]
        return self._chunks[number]

    def leaf(self, index: int) -> bytes:
        return self._chunk(index // CHUNK)[index % CHUNK]

    def subtree(self, lo: int, hi: int) -> bytes:
        n = hi - lo
        if n <= CHUNK and lo // CHUNK == (hi - 1) // CHUNK:
            base = (lo // CHUNK) * CHUNK
            return offline.mth(self._chunk(lo // CHUNK)[lo - base : hi - base])
        if n & (n - 1) == 0 and lo % n == 0:
            cached = self.conn.execute(
                select(node_t.c.hash).where(
                    node_t.c.level == n.bit_length() - 1, node_t.c.idx == lo // n
                )
            ).scalar()
            if cached is not None:
                return bytes(cached)
        k = offline.largest_power_of_two_below(n)
        return node_hash(self.subtree(lo, lo + k), self.subtree(lo + k, hi))

    def path(self, m: int, lo: int, hi: int) -> list[bytes]:
        """RFC 9162 PATH(m, D[lo:hi])."""
        n = hi - lo
        if n == 1:
            return []
        k = offline.largest_power_of_two_below(n)
        if m < k:
            return [*self.path(m, lo, lo + k), self.subtree(lo + k, hi)]
        return [*self.path(m - k, lo + k, hi), self.subtree(lo, lo + k)]

    def compact_range(self, size: int) -> list[bytes]:
        """The frontier of the first `size` leaves: one perfect subtree per set bit."""
        hashes = []
        lo = 0
        for bit in reversed(range(size.bit_length())):
            if size >> bit & 1:
                hashes.append(self.subtree(lo, lo + (1 << bit)))
                lo += 1 << bit
        return hashes


def inclusion_proof(conn: Connection, seq: int) -> dict[str, Any]:
    """A self-contained proof document for one event against the latest checkpoint
    (format in docs/audit.md; `offline.verify_proof` checks it)."""
    cp = latest_checkpoint(conn)
    if cp is None or not 0 <= seq < cp.tree_size:
        raise LogError(f"event {seq} is not covered by a checkpoint yet")
    row = conn.execute(
        select(events_t.c.canonical, events_t.c.leaf_hash).where(events_t.c.seq == seq)
    ).first()
    if row is None:
        raise LogError(f"event {seq} is missing")
    reader = TreeReader(conn, cp.tree_size)
    path = reader.path(seq, 0, cp.tree_size)
    return {
        "format": offline.PROOF_FORMAT,
        "seq": seq,
        "tree_size": cp.tree_size,
        "leaf_hash": bytes(row.leaf_hash).hex(),
        "canonical": bytes(row.canonical).decode("utf-8", "replace"),
        "path": [p.hex() for p in path],
        "checkpoint": cp.to_json(),
    }


def covering_checkpoint(conn: Connection, seq: int) -> Checkpoint | None:
    """The first checkpoint whose tree includes event `seq`."""
    row = conn.execute(
        select(checkpoint_t.c.note, checkpoint_t.c.signature)
        .where(checkpoint_t.c.tree_size > seq)
        .order_by(checkpoint_t.c.tree_size, checkpoint_t.c.idx)
        .limit(1)
    ).first()
    return offline.load_checkpoint(bytes(row.note), bytes(row.signature)) if row else None


# --------------------------------------------------------------------------- export


def _keyset(conn: Connection, query: Any, column: Any, start: int, batch: int = 2000) -> Iterator:
    last = start
    while True:
        rows = conn.execute(query.where(column > last).order_by(column).limit(batch)).all()
        if not rows:
            return
        yield from rows
        last = getattr(rows[-1], column.key)


def export_lines(conn: Connection, settings: LogSettings, since: int = 0) -> Iterator[str]:
    """JSON lines: a header (with the frontier of the first `since` events and the
    public keys), then events from `since` with each checkpoint placed right after
    the event that completes its tree. Only events covered by a checkpoint appear."""
    last = latest_checkpoint(conn)
    end = last.tree_size if last else 0
    since = max(0, min(since, end))
    reader = TreeReader(conn, end)
    header = {
        "type": "header",
        "format": offline.EXPORT_FORMAT,
        "origin": settings.origin,
        "since": since,
        "frontier": [h.hex() for h in reader.compact_range(since)],
        "public_keys": [
            {"key_id": kid, "pem": offline.public_key_pem(key)}
            for kid, key in sorted(settings.trusted.items())
        ],
        "exported_at": format_time(datetime.now(UTC)),
    }
    yield json.dumps(header, sort_keys=True) + "\n"
    events = _keyset(
        conn,
        select(events_t.c.seq, events_t.c.leaf_hash, events_t.c.canonical).where(
            events_t.c.seq < end
        ),
        events_t.c.seq,
        since - 1,
    )
    checkpoints = _keyset(
        conn,
        select(checkpoint_t.c.idx, checkpoint_t.c.note, checkpoint_t.c.signature).where(
            checkpoint_t.c.tree_size >= since
        ),
        checkpoint_t.c.idx,
        -1,
    )
    position = since
    for cp_row in checkpoints:
        cp = offline.load_checkpoint(bytes(cp_row.note), bytes(cp_row.signature))
        while position < cp.tree_size:
            ev = next(events, None)
            if ev is None:
                break
            yield (
                json.dumps(
                    {
                        "type": "event",
                        "seq": ev.seq,
                        "leaf_hash": bytes(ev.leaf_hash).hex(),
                        "canonical": bytes(ev.canonical).decode("utf-8", "replace"),
                    },
                    sort_keys=True,
                    ensure_ascii=False,
                )
                + "\n"
            )
            position = ev.seq + 1
        yield json.dumps({"type": "checkpoint", **cp.to_json()}, sort_keys=True) + "\n"
