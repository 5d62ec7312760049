"""The Merkle log: sealing pending events, signed checkpoints, proofs, export, recovery.

Request handlers only insert events (seq NULL). `seal` is the single integrator: it
takes one lock on the audit_state row (`SELECT ... FOR UPDATE` on PostgreSQL,
`BEGIN IMMEDIATE` on SQLite), gives the oldest pending events the next contiguous
sequence numbers, extends the RFC 6962 tree from the frontier kept in that row
(O(batch log n), no old leaf is read) and signs a checkpoint in the same transaction,
but only after checking that the new tree extends the newest checkpoint held outside
the database (the anchor): a log must never sign two inconsistent checkpoints. When
it does not, the sealer halts until `flask audit recover`. Hashing, notes and proofs
come from app.audit.core. Works on an Engine and plain connections; no Flask.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, func, insert, select, text, update
from sqlalchemy.engine import Connection, Engine

from app.audit import core
from app.audit.anchor import Anchor, read_anchor
from app.audit.core import Checkpoint, Frontier, node_hash
from app.audit.signing import Signer
from app.models import AuditCheckpoint, AuditCosignature, AuditEvent, AuditNode, AuditState

NODE_MIN_LEVEL = 8
CHUNK = 1 << NODE_MIN_LEVEL
WITNESS_TIMEOUT = 5.0

events_t = AuditEvent.__table__
state_t = AuditState.__table__
checkpoint_t = AuditCheckpoint.__table__
cosig_t = AuditCosignature.__table__
node_t = AuditNode.__table__
log = logging.getLogger(__name__)


class LogError(RuntimeError):
    """The log cannot answer (an event or checkpoint it needs is missing)."""


@dataclass(frozen=True)
class LogSettings:
    origin: str
    signer: Signer
    trusted: core.KeyRing
    anchor: Anchor
    checkpoint_interval: float = 300.0
    batch: int = 5000
    witnesses: list[tuple[str, core.Verifier]] = field(default_factory=list)


@dataclass(frozen=True)
class SealResult:
    sealed: int
    size: int
    checkpoint: Checkpoint | None
    refused: str | None = None


def _lock_state(conn: Connection) -> tuple[int, bytes, str | None]:
    """Take the one lock every sealer serialises on; create the row if missing (tests
    truncate tables). Returns (size, frontier, halted)."""
    empty = {"r": core.EMPTY_ROOT, "f": b""}
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
        select(state_t.c.size, state_t.c.frontier, state_t.c.halted)
        .where(state_t.c.id == 1)
        .with_for_update()
    ).one()
    return int(row.size), bytes(row.frontier), row.halted


def _cosignatures(conn: Connection, idx: int) -> list[core.Signature]:
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
        sigs = _cosignatures(conn, cp.index)
        if sigs:
            cp = cp.with_cosignatures(sigs)
    return cp


_CP_COLUMNS = (checkpoint_t.c.note, checkpoint_t.c.signature, checkpoint_t.c.key_id)


def latest_checkpoint(conn: Connection, *, cosigned: bool = True) -> Checkpoint | None:
    row = conn.execute(select(*_CP_COLUMNS).order_by(checkpoint_t.c.idx.desc()).limit(1)).first()
    return row_checkpoint(conn if cosigned else None, row) if row else None


def checkpoint_at(conn: Connection, size: int) -> Checkpoint | None:
    """The newest signed-note checkpoint of exactly this tree size."""
    rows = conn.execute(
        select(*_CP_COLUMNS)
        .where(checkpoint_t.c.tree_size == size)
        .order_by(checkpoint_t.c.idx.desc())
        .limit(4)
    ).all()
    for row in rows:
        cp = row_checkpoint(conn, row)
        if not cp.legacy:
            return cp
    return None


def _needs_work(conn: Connection, settings: LogSettings, now: datetime) -> bool:
    """A lock-free look: anything pending, or the last checkpoint too old?"""
    pending = conn.execute(select(events_t.c.id).where(events_t.c.seq.is_(None)).limit(1)).first()
    if pending is not None:
        return True
    last = conn.execute(
        select(checkpoint_t.c.created_at, checkpoint_t.c.tree_size, checkpoint_t.c.note)
        .order_by(checkpoint_t.c.idx.desc())
        .limit(1)
    ).first()
    if last is None:
        return True
    if bytes(last.note).count(b"\n") == 7:
        return True  # the newest is a format-1 checkpoint: sign a signed note
    size = conn.execute(select(state_t.c.size).where(state_t.c.id == 1)).scalar()
    if size is not None and size != last.tree_size:
        return True
    return now - last.created_at >= timedelta(seconds=settings.checkpoint_interval)


def _make_checkpoint(
    conn: Connection,
    settings: LogSettings,
    prev: Checkpoint | None,
    size: int,
    root: bytes,
    now: datetime,
) -> Checkpoint:
    index = prev.index + 1 if prev else 0
    when = core.format_time(now)
    if prev is not None and when < prev.time:
        when = prev.time  # a clock stepping back must not break the chain's order
    note = core.format_note(
        settings.origin, size, root, index, when, prev.digest if prev else core.ZERO_HASH
    )
    cp = core.load_checkpoint(note, settings.signer.sign(note), settings.signer.key_id)
    conn.execute(
        insert(checkpoint_t).values(
            idx=cp.index,
            tree_size=size,
            root_hash=root,
            created_at=core.parse_time(when),
            key_id=cp.key_id,
            note=note,
            signature=cp.signature,
        )
    )
    return cp


def external_problem(
    conn: Connection,
    settings: LogSettings,
    size: int,
    root: bytes,
    prev: Checkpoint | None,
) -> str | None:
    """Why a checkpoint of (size, root) after `prev` must not be signed: the newest
    checkpoint held outside the database (the anchor) is not in it and not extended
    by it. None when signing is safe (or there is no anchor)."""
    try:
        ext = settings.anchor.newest()
    except (OSError, ValueError) as exc:
        return f"the anchor's newest entry cannot be read ({exc})"
    if ext is None:
        return None
    settings.trusted.set_origin(ext.origin)
    if core.signature_problem(ext, settings.trusted) is not None:
        log.error("audit anchor: newest entry (checkpoint %s) is not validly signed", ext.index)
        return None
    if prev is not None and (prev.note, prev.signature) == (ext.note, ext.signature):
        return None  # the usual case: the anchor's newest is the database's newest
    if ext.origin != settings.origin:
        return None  # another log's anchor: nothing to extend
    stored = conn.execute(
        select(checkpoint_t.c.note, checkpoint_t.c.signature).where(checkpoint_t.c.idx == ext.index)
    ).first()
    if stored is None:
        if ext.index > (prev.index if prev else -1):
            return (
                f"the anchor holds checkpoint {ext.index} ({ext.tree_size} events) but the "
                f"database's newest is {prev.index if prev else 'none'}: the database is behind"
            )
        return f"anchored checkpoint {ext.index} is missing from the database"
    if (bytes(stored.note), bytes(stored.signature)) != (ext.note, ext.signature):
        return f"checkpoint {ext.index} in the database differs from the anchored copy"
    if ext.tree_size > size:
        return (
            f"the anchor's newest checkpoint covers {ext.tree_size} events but the tree "
            f"holds {size}: the database is behind"
        )
    try:
        at = root if ext.tree_size == size else TreeReader(conn, size).subtree(0, ext.tree_size)
    except LogError as exc:
        return f"cannot rebuild the tree at the anchored size: {exc}"
    if at != ext.root:
        return (
            f"the tree's root at {ext.tree_size} events differs from anchored checkpoint "
            f"{ext.index}: the database diverges from the published log"
        )
    return None


def _halt(engine: Engine, reason: str) -> None:
    log.critical("audit log HALTED, refusing to sign: %s. Run `flask audit recover`.", reason)
    with engine.begin() as conn:
        conn.execute(update(state_t).where(state_t.c.id == 1).values(halted=reason))


def halted(conn: Connection) -> str | None:
    return conn.execute(select(state_t.c.halted).where(state_t.c.id == 1)).scalar()


def seal(engine: Engine, settings: LogSettings, *, force_checkpoint: bool = False) -> SealResult:
    """Seal one batch of pending events and sign a checkpoint when anything was sealed,
    when forced, or when the last checkpoint is older than the checkpoint interval.
    Refuses (and halts) when the result would not extend the anchored checkpoint."""
    now = datetime.now(UTC)
    with engine.connect() as conn:
        if not force_checkpoint and not _needs_work(conn, settings, now):
            conn.rollback()
            return SealResult(0, -1, None)
        conn.rollback()
        size, blob, stop = _lock_state(conn)
        if stop:
            conn.rollback()
            return SealResult(0, size, None, stop)
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
        last = latest_checkpoint(conn, cosigned=False)
        cp = None
        if (
            assignments
            or force_checkpoint
            or last is None
            or last.legacy
            or last.tree_size != frontier.size
            or now - core.parse_time(last.time) >= timedelta(seconds=settings.checkpoint_interval)
        ):
            problem = external_problem(conn, settings, frontier.size, root, last)
            if problem is not None:
                conn.rollback()
                _halt(engine, problem)
                return SealResult(0, size, None, problem)
            cp = _make_checkpoint(conn, settings, last, frontier.size, root, now)
        conn.commit()
    if cp is not None:
        settings.anchor.append(cp)
        if settings.witnesses:
            submit_to_witnesses(engine, settings, cp)
    return SealResult(len(assignments), frontier.size, cp)


def seal_all(engine: Engine, settings: LogSettings, *, force_checkpoint: bool = False) -> int:
    """Seal until nothing is pending; returns how many events were sealed. Raises
    LogError when the sealer refuses to sign."""
    total = 0
    while True:
        result = seal(engine, settings, force_checkpoint=force_checkpoint)
        if result.refused:
            raise LogError(result.refused)
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


def _signed_latest(conn: Connection) -> Checkpoint:
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
    cp = cp or _signed_latest(conn)
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
    cp = _signed_latest(conn) if new is None else checkpoint_at(conn, new)
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
        select(*_CP_COLUMNS)
        .where(checkpoint_t.c.tree_size > seq)
        .order_by(checkpoint_t.c.tree_size, checkpoint_t.c.idx)
        .limit(1)
    ).first()
    return row_checkpoint(conn, row) if row else None


# --------------------------------------------------------------------------- export


def _keyset(conn: Connection, query: Any, column: Any, start: int, batch: int = 2000) -> Iterator:
    last = start
    while True:
        rows = conn.execute(query.where(column > last).order_by(column).limit(batch)).all()
        if not rows:
            return
        yield from rows
        last = getattr(rows[-1], column.key)


def _event_line(ev: Any) -> str:
    if ev.canonical is None:
        return (
            json.dumps(
                {"type": "leaf", "seq": ev.seq, "leaf_hash": bytes(ev.leaf_hash).hex()},
                sort_keys=True,
            )
            + "\n"
        )
    return (
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


def export_lines(
    conn: Connection, settings: LogSettings, since: int = 0, consistency_from: int | None = None
) -> Iterator[str]:
    """JSON lines: a header (with the frontier of the first `since` events and the
    public keys), then events from `since` (pruned ones as leaf lines) with each
    checkpoint right after the event that completes its tree. Only events covered by
    a checkpoint appear. With `consistency_from` (a size before `since`), a
    consistency proof from it to the last checkpoint precedes that checkpoint."""
    last = latest_checkpoint(conn, cosigned=False)
    end = last.tree_size if last else 0
    since = max(0, min(since, end))
    reader = TreeReader(conn, end)
    header = {
        "type": "header",
        "format": core.EXPORT_FORMAT,
        "origin": settings.origin,
        "since": since,
        "frontier": [h.hex() for h in reader.compact_range(since)],
        "public_keys": [settings.signer.vkey],
        "exported_at": core.format_time(datetime.now(UTC)),
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
        select(checkpoint_t.c.idx, *_CP_COLUMNS).where(checkpoint_t.c.tree_size >= since),
        checkpoint_t.c.idx,
        -1,
    )
    position = since
    last_idx = last.index if last else -1
    for cp_row in checkpoints:
        cp = row_checkpoint(conn if cp_row.idx == last_idx else None, cp_row)
        while position < cp.tree_size:
            ev = next(events, None)
            if ev is None:
                break
            yield _event_line(ev)
            position = ev.seq + 1
        if cp.index == last_idx and consistency_from is not None and 0 < consistency_from < since:
            proof = reader.consistency(consistency_from, cp.tree_size)
            yield (
                json.dumps(
                    {
                        "type": "consistency",
                        "old_size": consistency_from,
                        "proof": [p.hex() for p in proof],
                    },
                    sort_keys=True,
                )
                + "\n"
            )
        yield json.dumps({"type": "checkpoint", **cp.to_json()}, sort_keys=True) + "\n"


# --------------------------------------------------------------------------- witnesses


def _witness_size(conn: Connection, name: str) -> int:
    size = conn.execute(
        select(func.max(checkpoint_t.c.tree_size))
        .select_from(cosig_t.join(checkpoint_t, checkpoint_t.c.idx == cosig_t.c.checkpoint_idx))
        .where(cosig_t.c.witness == name)
    ).scalar()
    return int(size or 0)


def _keep_cosignature(conn: Connection, cp: Checkpoint, sig: core.Signature, ts: int) -> bool:
    """Store one verified cosignature on checkpoint `cp` unless it is already there."""
    exists = conn.execute(
        select(cosig_t.c.witness).where(
            cosig_t.c.checkpoint_idx == cp.index, cosig_t.c.witness == sig.name
        )
    ).first()
    if exists is not None:
        return False
    conn.execute(
        insert(cosig_t).values(
            checkpoint_idx=cp.index,
            witness=sig.name,
            key_id=sig.key_id.hex(),
            timestamp=ts,
            signature=sig.data[8:],
        )
    )
    return True


def store_cosignatures(
    engine: Engine, settings: LogSettings, cp: Checkpoint, lines: Iterable[str]
) -> list[str]:
    """Keep each valid cosignature line from a configured witness on checkpoint `cp`;
    returns the witness names stored. Unknown lines are ignored."""
    stored = []
    for line in lines:
        try:
            _, sigs = core.split_signed_note("x\n\n" + line.rstrip("\n") + "\n")
        except ValueError:
            continue
        for sig in sigs:
            witness = settings.trusted.witnesses.get((sig.name, sig.key_id))
            if witness is None:
                continue
            ts = core.cosignature_valid(cp.note, sig, witness)
            if ts is None:
                log.error("witness %s sent an invalid cosignature", sig.name)
                continue
            with engine.begin() as conn:
                _keep_cosignature(conn, cp, sig, ts)
            stored.append(sig.name)
    return stored


def _anchor_cosigned(engine: Engine, settings: LogSettings, cp: Checkpoint) -> None:
    """Append the checkpoint again, now with every cosignature it has, to the anchor:
    what a witness vouched for is then held outside the database too, so a database
    restored from a backup cannot make the sealer forget it (external_problem reads
    the anchor's newest entry) and `flask audit recover` can put it back."""
    with engine.connect() as conn:
        sigs = _cosignatures(conn, cp.index)
        conn.rollback()
    if sigs:
        settings.anchor.append(cp.with_cosignatures(sigs))


def restore_cosignatures(conn: Connection, settings: LogSettings, path: Path) -> int:
    """Put back the anchor's cosignatures (from configured witnesses, verified, on a
    checkpoint the database holds byte for byte) that the database lacks."""
    restored = 0
    for _, item in read_anchor(path):
        if isinstance(item, str) or not item.cosignatures:
            continue
        stored = conn.execute(
            select(checkpoint_t.c.note, checkpoint_t.c.signature).where(
                checkpoint_t.c.idx == item.index
            )
        ).first()
        if stored is None or (bytes(stored.note), bytes(stored.signature)) != (
            item.note,
            item.signature,
        ):
            continue
        for sig in item.cosignatures:
            witness = settings.trusted.witnesses.get((sig.name, sig.key_id))
            ts = None if witness is None else core.cosignature_valid(item.note, sig, witness)
            if ts is not None and _keep_cosignature(conn, item, sig, ts):
                restored += 1
    return restored


def submit_to_witnesses(engine: Engine, settings: LogSettings, cp: Checkpoint) -> dict[str, str]:
    """tlog-witness add-checkpoint to every configured witness with a URL; the
    cosignatures returned are stored beside the checkpoint. A witness that has seen a
    bigger tree than ours, or answers that ours is inconsistent, halts the sealer."""
    outcome: dict[str, str] = {}
    for url, witness in settings.witnesses:
        if url == "-":
            continue
        with engine.connect() as conn:
            old = _witness_size(conn, witness.name)
        for _attempt in range(2):
            if old > cp.tree_size:
                _halt(
                    engine,
                    f"witness {witness.name} has cosigned {old} events, "
                    f"the log holds {cp.tree_size}",
                )
                outcome[witness.name] = "halted"
                break
            with engine.connect() as conn:
                proof = (
                    []
                    if old in (0, cp.tree_size)
                    else TreeReader(conn, cp.tree_size).consistency(old, cp.tree_size)
                )
            body = core.format_consistency_proof(old, proof, cp).encode()
            if not url.startswith(("http://", "https://")):
                outcome[witness.name] = "not an http(s) URL"
                break
            req = urllib.request.Request(  # noqa: S310 - scheme checked above
                url.rstrip("/") + "/add-checkpoint", data=body, method="POST"
            )
            try:
                with urllib.request.urlopen(req, timeout=WITNESS_TIMEOUT) as resp:  # noqa: S310 - same
                    lines = resp.read(1 << 16).decode("utf-8", "replace").splitlines()
                outcome[witness.name] = (
                    "cosigned"
                    if store_cosignatures(engine, settings, cp, lines)
                    else "no cosignature"
                )
                break
            except urllib.error.HTTPError as exc:
                text_body = exc.read(64).decode("ascii", "replace").strip()
                if exc.code == 409 and text_body.isdigit():
                    old = int(text_body)
                    continue
                if exc.code == 422:
                    _halt(
                        engine,
                        f"witness {witness.name} refused checkpoint {cp.index} as inconsistent",
                    )
                    outcome[witness.name] = "halted"
                else:
                    outcome[witness.name] = f"HTTP {exc.code}"
                log.error("witness %s: HTTP %s %s", witness.name, exc.code, text_body)
                break
            except (OSError, ValueError) as exc:
                log.warning("witness %s unreachable: %s", witness.name, exc)
                outcome[witness.name] = "unreachable"
                break
    if "cosigned" in outcome.values():
        _anchor_cosigned(engine, settings, cp)
    return outcome


# --------------------------------------------------------------------------- recovery


def rebuild_state(conn: Connection) -> int:
    """Recompute the tree state row and any missing cached nodes from the stored leaf
    hashes (after re-importing events). Returns the tree size."""
    have = {(r.level, r.idx) for r in conn.execute(select(node_t.c.level, node_t.c.idx))}
    nodes: list[dict[str, Any]] = []
    frontier = Frontier(
        on_node=lambda level, idx, h: (
            nodes.append({"level": level, "idx": idx, "hash": h})
            if (level, idx) not in have
            else None
        ),
        min_level=NODE_MIN_LEVEL,
    )
    for seq, leaf in conn.execute(
        select(events_t.c.seq, events_t.c.leaf_hash)
        .where(events_t.c.seq.is_not(None))
        .order_by(events_t.c.seq)
    ):
        if seq != frontier.size:
            raise LogError(f"event {frontier.size} is missing: cannot rebuild the tree")
        frontier.append(bytes(leaf))
    if nodes:
        conn.execute(insert(node_t), nodes)
    conn.execute(
        update(state_t)
        .where(state_t.c.id == 1)
        .values(size=frontier.size, root=frontier.root(), frontier=frontier.to_bytes())
    )
    return frontier.size


def import_export(conn: Connection, lines: Iterable[bytes]) -> tuple[int, int]:
    """Re-insert the events and checkpoints of a (verified) export that the database
    lacks, by seq and index. Returns (events, checkpoints) inserted."""
    have_seq = {
        r[0] for r in conn.execute(select(events_t.c.seq).where(events_t.c.seq.is_not(None)))
    }
    have_idx = {r[0] for r in conn.execute(select(checkpoint_t.c.idx))}
    events = checkpoints = 0
    for _, obj in core.read_lines(lines):
        kind = obj.get("type")
        if kind in ("event", "leaf") and obj["seq"] not in have_seq:
            leaf = bytes.fromhex(obj["leaf_hash"])
            if kind == "event":
                data = obj["canonical"].encode()
                body = json.loads(data)
                values = {
                    "event_id": body["event_id"],
                    "created_at": core.parse_time(body["time"]),
                    "action": body["action"],
                    "sensitivity": body["sensitivity"],
                    "actor": body["actor"],
                    "actor_ip": body["actor_ip"],
                    "target": body["target"],
                    "outcome": body["outcome"],
                    "details": core.canonical_dumps(body["details"], checked=False).decode(),
                    "canonical": data,
                }
            else:
                values = {
                    "event_id": f"{obj['seq']:032x}",
                    "created_at": datetime(1970, 1, 1, tzinfo=UTC),
                    "action": "pruned",
                    "sensitivity": "low",
                    "actor": "",
                    "outcome": "success",
                    "details": "{}",
                    "canonical": None,
                }
            conn.execute(insert(events_t).values(seq=obj["seq"], leaf_hash=leaf, **values))
            events += 1
        elif kind == "checkpoint":
            cp = core.checkpoint_from_json({k: v for k, v in obj.items() if k != "type"})
            if cp.index not in have_idx:
                conn.execute(
                    insert(checkpoint_t).values(
                        idx=cp.index,
                        tree_size=cp.tree_size,
                        root_hash=cp.root,
                        created_at=core.parse_time(cp.time),
                        key_id=cp.key_id,
                        note=cp.note,
                        signature=cp.signature,
                    )
                )
                checkpoints += 1
    return events, checkpoints


def recover(engine: Engine, settings: LogSettings, export: list[bytes] | None = None) -> str:
    """`flask audit recover`: optionally re-import what an export holds and the
    database lacks, rebuild the tree state, and clear the halt only when the tree now
    extends the anchor's newest checkpoint. Raises LogError saying why not."""
    if export is not None:
        report = core.verify_export(export, settings.trusted)
        if not report.ok:
            raise LogError(f"the export does not verify: {report.summary()}")
    with engine.connect() as conn:
        _lock_state(conn)
        imported = (0, 0)
        if export is not None:
            imported = import_export(conn, export)
        cosigned = 0
        if settings.anchor.path is not None and settings.anchor.path.exists():
            cosigned = restore_cosignatures(conn, settings, settings.anchor.path)
        size = rebuild_state(conn)
        root = conn.execute(select(state_t.c.root).where(state_t.c.id == 1)).scalar()
        last = latest_checkpoint(conn, cosigned=False)
        problem = external_problem(conn, settings, size, bytes(root), last)
        if problem is None and last is not None and last.tree_size <= size:
            reader = TreeReader(conn, size)
            if last.tree_size and reader.subtree(0, last.tree_size) != last.root:
                problem = f"the tree does not extend the database's own checkpoint {last.index}"
        if problem is not None:
            conn.rollback()
            raise LogError(problem)
        conn.execute(update(state_t).where(state_t.c.id == 1).values(halted=None))
        conn.commit()
    log.warning(
        "audit log recovered: %s events, %s checkpoints, %s cosignatures re-imported",
        *imported,
        cosigned,
    )
    return (
        f"recovered: {imported[0]} events and {imported[1]} checkpoints re-imported, "
        f"{cosigned} witness cosignatures restored from the anchor, tree of {size} events"
    )


# --------------------------------------------------------------------------- retention


def prune(engine: Engine, before: datetime, batch: int = 5000) -> int:
    """Drop the payload of sealed events older than `before` (AU-11), oldest first,
    stopping at the first event that is not older, so the pruned events are always a
    prefix of the log. Leaf hashes, seqs and checkpoints stay: every proof holds."""
    total = 0
    with engine.connect() as conn:
        last = latest_checkpoint(conn, cosigned=False)
        covered = last.tree_size if last else 0
        first_kept = conn.execute(
            select(func.min(events_t.c.seq)).where(
                events_t.c.seq.is_not(None), events_t.c.created_at >= before
            )
        ).scalar()
        limit = covered if first_kept is None else min(covered, int(first_kept))
        conn.rollback()
    lo = 0
    while lo < limit:
        hi = min(lo + batch, limit)
        with engine.begin() as conn:
            result = conn.execute(
                update(events_t)
                .where(events_t.c.seq >= lo, events_t.c.seq < hi, events_t.c.canonical.is_not(None))
                .values(canonical=None, actor="", actor_ip=None, target=None, details="{}")
            )
            total += result.rowcount or 0
        lo = hi
    return total


# --------------------------------------------------------------------------- receipts

# Per-request records, not changes to the key: no receipt (and no proof work) for them.
NOT_LIFECYCLE = ("key.validated", "key.validation_failed", "key.rate_limited")


def key_receipts(conn: Connection, public_id: str, limit: int = 200) -> dict[str, Any]:
    """A key owner's receipts: each lifecycle event of key `public_id` covered by the
    latest signed checkpoint, with its inclusion proof (tlog-proof, event bytes as
    `extra`), and how many are still waiting for a checkpoint. Format in docs/audit.md;
    `offline.py receipt FILE` checks it."""
    target = f"key:{public_id}"
    try:
        cp = _signed_latest(conn)
    except LogError:
        cp = None
    query = (
        select(events_t.c.seq, events_t.c.action, events_t.c.created_at)
        .where(
            events_t.c.target == target,
            events_t.c.action.like("key.%"),
            events_t.c.action.not_in(NOT_LIFECYCLE),
        )
        .order_by(events_t.c.id)
        .limit(limit)
    )
    rows = conn.execute(query).all()
    receipts = []
    pending = 0
    reader = TreeReader(conn, cp.tree_size) if cp is not None else None
    for row in rows:
        if cp is None or row.seq is None or row.seq >= cp.tree_size:
            pending += 1
            continue
        proof = inclusion_proof(conn, row.seq, cp, reader)
        receipts.append(
            {
                "seq": row.seq,
                "action": row.action,
                "time": core.format_time(row.created_at),
                "leaf_hash": proof["leaf_hash"],
                "proof": proof["text"],
            }
        )
    return {
        "format": core.RECEIPT_FORMAT,
        "target": target,
        "checkpoint": cp.signed_note() if cp else None,
        "receipts": receipts,
        "pending": pending,
    }
