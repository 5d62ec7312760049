"""Reading the sealed log: checkpoints from their rows and O(log n) inclusion and
consistency proofs from cached nodes and leaf chunks.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from app.audit import core
from app.audit.core import Checkpoint, node_hash
from app.audit.log.state import CHUNK, LogError, checkpoint_t, cosig_t, events_t, node_t


def cosignatures_of(conn: Connection, idx: int) -> list[core.Signature]:
    rows = conn.execute(
        select(cosig_t.c.witness, cosig_t.c.key_id, cosig_t.c.timestamp, cosig_t.c.signature)
        .where(cosig_t.c.checkpoint_idx == idx)
        .order_by(cosig_t.c.witness)
    ).all()
    return [
        core.Signature(
            r.witness,
            bytes.fromhex(r.key_id),
            int(r.timestamp).to_bytes(8, "big") + bytes(r.signature),
        )
        for r in rows
    ]


def row_checkpoint(conn: Connection | None, row: Any) -> Checkpoint:
    """A checkpoint from its row (note, signature, key_id[, idx]), with its
    cosignatures when a connection is given."""
    cp = core.load_checkpoint(bytes(row.note), bytes(row.signature), row.key_id)
    if conn is not None and not cp.legacy:
        sigs = cosignatures_of(conn, cp.index)
        if sigs:
            cp = cp.with_cosignatures(sigs)
    return cp


CP_COLUMNS = (checkpoint_t.c.note, checkpoint_t.c.signature, checkpoint_t.c.key_id)


def latest_checkpoint(conn: Connection, *, cosigned: bool = True) -> Checkpoint | None:
    row = conn.execute(select(*CP_COLUMNS).order_by(checkpoint_t.c.idx.desc()).limit(1)).first()
    return row_checkpoint(conn if cosigned else None, row) if row else None


def checkpoint_at(conn: Connection, size: int) -> Checkpoint | None:
    """The newest signed-note checkpoint of exactly this tree size."""
    rows = conn.execute(
        select(*CP_COLUMNS)
        .where(checkpoint_t.c.tree_size == size)
        .order_by(checkpoint_t.c.idx.desc())
        .limit(4)
    ).all()
    for row in rows:
        cp = row_checkpoint(conn, row)
        if not cp.legacy:
            return cp
    return None


class TreeReader:
    """Subtree hashes for proofs: cached nodes (256 leaves and up) plus at most one
    256-leaf chunk of leaves per level of the path, so a proof reads O(log n) rows."""

    def __init__(self, conn: Connection, size: int) -> None:
        self.conn = conn
        self.size = size
        self._chunks: dict[int, list[bytes]] = {}
        # Proofs against one tree size share the right edge's subtrees and, for nearby
        # leaves, the low levels: a reader kept for several proofs computes each once.
        self._subtrees: dict[tuple[int, int], bytes] = {}

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

    def subtree(self, lo: int, hi: int) -> bytes:
        known = self._subtrees.get((lo, hi))
        if known is None:
            known = self._subtrees[(lo, hi)] = self._subtree(lo, hi)
        return known

    def _subtree(self, lo: int, hi: int) -> bytes:
        n = hi - lo
        if n <= CHUNK and lo // CHUNK == (hi - 1) // CHUNK:
            base = (lo // CHUNK) * CHUNK
            return core.mth(self._chunk(lo // CHUNK)[lo - base : hi - base])
        if n & (n - 1) == 0 and lo % n == 0:
            cached = self.conn.execute(
                select(node_t.c.hash).where(
                    node_t.c.level == n.bit_length() - 1, node_t.c.idx == lo // n
                )
            ).scalar()
            if cached is not None:
                return bytes(cached)
        k = core.largest_power_of_two_below(n)
        return node_hash(self.subtree(lo, lo + k), self.subtree(lo + k, hi))

    def path(self, m: int, size: int) -> list[bytes]:
        return core.inclusion_path(m, 0, size, self.subtree)

    def consistency(self, old: int, new: int) -> list[bytes]:
        return core.consistency_path(old, new, self.subtree)

    def compact_range(self, size: int) -> list[bytes]:
        """The frontier of the first `size` leaves: one perfect subtree per set bit."""
        hashes = []
        lo = 0
        for bit in reversed(range(size.bit_length())):
            if size >> bit & 1:
                hashes.append(self.subtree(lo, lo + (1 << bit)))
                lo += 1 << bit
        return hashes


def signed_latest(conn: Connection) -> Checkpoint:
    cp = latest_checkpoint(conn)
    if cp is None or cp.legacy:
        raise LogError("no signed-note checkpoint yet (run `flask audit checkpoint`)")
    return cp


def inclusion_proof(
    conn: Connection,
    seq: int,
    cp: Checkpoint | None = None,
    reader: TreeReader | None = None,
) -> dict[str, Any]:
    """Event `seq`'s inclusion proof against the latest checkpoint (or `cp`): the
    C2SP tlog-proof text (with the event bytes as `extra` unless pruned) and its parts.
    `reader`, a TreeReader of the checkpoint's size, is shared by several proofs."""
    cp = cp or signed_latest(conn)
    if not 0 <= seq < cp.tree_size:
        raise LogError(f"event {seq} is not covered by a checkpoint yet")
    row = conn.execute(
        select(events_t.c.canonical, events_t.c.leaf_hash).where(events_t.c.seq == seq)
    ).first()
    if row is None:
        raise LogError(f"event {seq} is missing")
    if reader is None or reader.size != cp.tree_size:
        reader = TreeReader(conn, cp.tree_size)
    path = reader.path(seq, cp.tree_size)
    extra = bytes(row.canonical) if row.canonical is not None else None
    return {
        "seq": seq,
        "tree_size": cp.tree_size,
        "leaf_hash": bytes(row.leaf_hash).hex(),
        "path": [p.hex() for p in path],
        "checkpoint": cp,
        "text": core.format_inclusion_proof(seq, path, cp, extra),
    }


def seq_of_leaf(conn: Connection, leaf: bytes) -> int | None:
    return conn.execute(
        select(func.min(events_t.c.seq)).where(
            events_t.c.leaf_hash == leaf, events_t.c.seq.is_not(None)
        )
    ).scalar()


def consistency_proof(conn: Connection, old: int, new: int | None = None) -> str:
    """RFC 9162 2.1.4 proof from tree size `old` to the signed checkpoint of size
    `new` (the latest by default), as `old N`, proof lines, blank, signed note."""
    cp = signed_latest(conn) if new is None else checkpoint_at(conn, new)
    if cp is None:
        raise LogError(f"no signed checkpoint of size {new}")
    if not 0 <= old <= cp.tree_size:
        raise LogError(f"old size {old} is not between 0 and {cp.tree_size}")
    proof = (
        []
        if old in (0, cp.tree_size)
        else TreeReader(conn, cp.tree_size).consistency(old, cp.tree_size)
    )
    return core.format_consistency_proof(old, proof, cp)


def covering_checkpoint(conn: Connection, seq: int) -> Checkpoint | None:
    """The first checkpoint whose tree includes event `seq`."""
    row = conn.execute(
        select(*CP_COLUMNS)
        .where(checkpoint_t.c.tree_size > seq)
        .order_by(checkpoint_t.c.tree_size, checkpoint_t.c.idx)
        .limit(1)
    ).first()
    return row_checkpoint(conn, row) if row else None
