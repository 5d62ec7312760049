"""The export: JSON lines any verifier reads (format in docs/audit.md)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from app.audit import core
from app.audit.log.reader import CP_COLUMNS, TreeReader, latest_checkpoint, row_checkpoint
from app.audit.log.state import LogSettings, checkpoint_t, events_t


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
        select(checkpoint_t.c.idx, *CP_COLUMNS).where(checkpoint_t.c.tree_size >= since),
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
