"""A key owner's receipts: inclusion proofs of each lifecycle event of a key."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.engine import Connection

from app.audit import core
from app.audit.log.reader import TreeReader, inclusion_proof, signed_latest
from app.audit.log.state import LogError, events_t

# Per-request records, not changes to the key: no receipt (and no proof work) for them.
NOT_LIFECYCLE = ("key.validated", "key.validation_failed", "key.rate_limited")


def key_receipts(conn: Connection, public_id: str, limit: int = 200) -> dict[str, Any]:
    """A key owner's receipts: each lifecycle event of key `public_id` covered by the
    latest signed checkpoint, with its inclusion proof (tlog-proof, event bytes as
    `extra`), and how many are still waiting for a checkpoint. Format in docs/audit.md;
    the offline verifier's `receipt FILE` checks it."""
    target = f"key:{public_id}"
    try:
        cp = signed_latest(conn)
    except LogError:
        cp = None
    query = (
        select(events_t.c.seq, events_t.c.action, events_t.c.created_at)
        .where(
            or_(
                events_t.c.target == target,
                # A key made by rotation: the rotation is its creation.
                and_(
                    events_t.c.action == "key.rotated",
                    events_t.c.details.contains(f'"successor":"{target}"', autoescape=True),
                ),
            ),
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
        receipt = {
            "seq": row.seq,
            "action": row.action,
            "time": core.format_time(row.created_at),
            "leaf_hash": proof["leaf_hash"],
            "proof": proof["text"],
        }
        if "\nextra " not in proof["text"]:
            receipt["pruned"] = True  # payload dropped by retention: the leaf hash stays
        receipts.append(receipt)
    return {
        "format": core.RECEIPT_FORMAT,
        "target": target,
        "checkpoint": cp.signed_note() if cp else None,
        "receipts": receipts,
        "pending": pending,
    }
