"""`flask audit recover`: re-import from an export, rebuild the tree state, and
lift a halt only when the tree extends everything held outside the database.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection, Engine

from app import times
from app.audit import core
from app.audit.core import Frontier
from app.audit.log.reader import TreeReader, cosignatures_of, latest_checkpoint
from app.audit.log.state import (
    NODE_MIN_LEVEL,
    LogError,
    LogSettings,
    checkpoint_t,
    events_t,
    lock_state,
    node_t,
    state_t,
)
from app.audit.log.witnesses import restore_cosignatures, views_problem, witness_views
from app.audit.log.writer import anchor_unusable, external_problem

log = logging.getLogger(__name__)


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


def recover(
    engine: Engine,
    settings: LogSettings,
    export: list[bytes] | None = None,
    *,
    new_anchor: bool = False,
) -> str:
    """`flask audit recover`: optionally re-import what an export holds and the
    database lacks, rebuild the tree state, and clear the halt only when the tree now
    extends the anchor's newest checkpoint and what every configured witness last
    cosigned (each must answer). `new_anchor` starts a new anchor from the database's
    newest checkpoint, only when the anchor cannot vouch for anything (missing,
    empty, unreadable or its newest entry forged); the old file is kept beside it.
    Raises LogError saying why not."""
    if export is not None:
        report = core.verify_export(export, settings.trusted)
        if not report.ok:
            raise LogError(f"the export does not verify: {report.summary()}")
    replaced: Path | None = None
    with engine.connect() as conn:
        views = witness_views(settings, conn, latest_checkpoint(conn, cosigned=False))
        conn.rollback()
        unasked = [f"{v.name}: {v.problem}" for v in views if v.problem is not None]
        if unasked:
            raise LogError(
                "every configured witness must answer before the halt is lifted; "
                + "; ".join(unasked)
            )
        lock_state(conn)
        imported = (0, 0)
        if export is not None:
            imported = import_export(conn, export)
        cosigned = 0
        if settings.anchor.path is not None and settings.anchor.path.exists():
            cosigned = restore_cosignatures(conn, settings, settings.anchor.path)
        size = rebuild_state(conn)
        root = bytes(conn.execute(select(state_t.c.root).where(state_t.c.id == 1)).scalar())
        last = latest_checkpoint(conn, cosigned=False)
        if new_anchor:
            if settings.anchor.path is None or anchor_unusable(settings, last) is None:
                conn.rollback()
                raise LogError(
                    "the anchor is intact: --new-anchor is only for an anchor that is "
                    "missing, empty, unreadable or forged"
                )
            problem = None
        else:
            problem = external_problem(conn, settings, size, root, last)
        if problem is None and last is not None and last.tree_size <= size:
            reader = TreeReader(conn, size)
            if last.tree_size and reader.subtree(0, last.tree_size) != last.root:
                problem = f"the tree does not extend the database's own checkpoint {last.index}"
        if problem is None:
            try:
                problem = views_problem(conn, views, size, root)
            except LogError as exc:
                problem = f"cannot rebuild the tree at a witness's size: {exc}"
        if problem is not None:
            conn.rollback()
            raise LogError(problem)
        if new_anchor and settings.anchor.path is not None:
            replaced = _restart_anchor(conn, settings, settings.anchor.path, last)
        conn.execute(update(state_t).where(state_t.c.id == 1).values(halted=None))
        conn.commit()
    log.warning(
        "audit log recovered: %s events, %s checkpoints, %s cosignatures re-imported",
        *imported,
        cosigned,
    )
    restarted = ""
    if new_anchor:
        restarted = "; a new anchor was started" + (
            f" (the old one is kept as {replaced})" if replaced else ""
        )
    return (
        f"recovered: {imported[0]} events and {imported[1]} checkpoints re-imported, "
        f"{cosigned} witness cosignatures restored from the anchor, tree of {size} events"
        f"{restarted}"
    )


def _restart_anchor(
    conn: Connection, settings: LogSettings, path: Path, last: core.Checkpoint | None
) -> Path | None:
    """Move the old anchor aside (evidence) and start the new one with the
    database's newest checkpoint and its cosignatures."""
    replaced = None
    if path.exists():
        stamp = times.compact(times.now())
        replaced = path.with_name(f"{path.name}.replaced-{stamp}")
        path.rename(replaced)
    if last is not None:
        sigs = cosignatures_of(conn, last.index)
        settings.anchor.append(last.with_cosignatures(sigs) if sigs else last)
    return replaced
