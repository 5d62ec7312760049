"""The single integrator: seals pending events and signs checkpoints.

Request handlers only insert events (seq NULL). `seal` takes one lock on the
audit_state row (`SELECT ... FOR UPDATE` on PostgreSQL, `BEGIN IMMEDIATE` on
SQLite), gives the oldest pending events the next contiguous sequence numbers,
extends the RFC 6962 tree from the frontier kept in that row (O(batch log n), no old
leaf is read) and signs a checkpoint in the same transaction, but only after
checking that the new tree extends the newest checkpoint held outside the database
(the anchor): a log must never sign two inconsistent checkpoints. When it does
not, the sealer halts until `flask audit recover`.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.engine import Connection, Engine

from app.audit import core
from app.audit.core import Checkpoint, Frontier
from app.audit.log.reader import TreeReader, latest_checkpoint
from app.audit.log.state import (
    NODE_MIN_LEVEL,
    LogError,
    LogSettings,
    SealResult,
    checkpoint_t,
    events_t,
    halt,
    lock_state,
    node_t,
    state_t,
)
from app.audit.log.witnesses import submit_to_witnesses, views_problem, witness_views

log = logging.getLogger(__name__)


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


def anchor_unusable(settings: LogSettings, prev: Checkpoint | None) -> str | None:
    """Why the anchor cannot vouch for anything: missing or empty once the log has
    signed, unreadable, or its newest entry forged. Such an anchor is damage, never a
    fresh start: only `flask audit recover --new-anchor` replaces it."""
    try:
        ext = settings.anchor.newest()
    except (OSError, ValueError) as exc:
        return f"the anchor's newest entry cannot be read ({exc})"
    if ext is None:
        if prev is None or settings.anchor.path is None:
            return None  # the log's first checkpoint, or no anchor file configured
        return (
            f"the anchor {settings.anchor.path} is missing or empty but the log has signed "
            f"checkpoint {prev.index}: a rollback would go unnoticed. Restore the anchor, "
            "or start a new one with `flask audit recover --new-anchor`"
        )
    settings.trusted.set_origin(ext.origin)
    forged = core.signature_problem(ext, settings.trusted)
    if forged is not None:
        return (
            f"the anchor's newest entry (checkpoint {ext.index}) is not validly signed "
            f"({forged[1]}): the anchor was tampered with"
        )
    return None


def external_problem(
    conn: Connection,
    settings: LogSettings,
    size: int,
    root: bytes,
    prev: Checkpoint | None,
) -> str | None:
    """Why a checkpoint of (size, root) after `prev` must not be signed: the anchor
    is unusable (anchor_unusable), or its newest checkpoint is not in the database
    and not extended by this tree. None when signing is safe (or no anchor file is
    configured)."""
    unusable = anchor_unusable(settings, prev)
    if unusable is not None:
        return unusable
    ext = settings.anchor.newest()
    if ext is None:
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
        # Asked before the lock (no request waits on a witness), one GET each: what
        # each witness last cosigned, so a tree that does not extend it is never
        # signed. A witness without the monitoring GET is not probed here (that would
        # cost more round trips); its 422 after signing halts the log instead.
        views = witness_views(settings) if settings.witnesses else []
        for view in views:
            if view.problem is not None:
                log.warning("witness %s not consulted before signing: %s", view.name, view.problem)
        size, blob, stop = lock_state(conn)
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
            if problem is None and views:
                try:
                    problem = views_problem(conn, views, frontier.size, root)
                except LogError as exc:
                    problem = f"cannot rebuild the tree at a witness's size: {exc}"
            if problem is not None:
                conn.rollback()
                halt(engine, problem)
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
