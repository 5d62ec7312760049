"""C2SP tlog-witness, the log's side: submitting checkpoints, keeping the
cosignatures witnesses return, and putting back those the anchor holds.
"""

from __future__ import annotations

import hashlib
import logging
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, insert, select
from sqlalchemy.engine import Connection, Engine

from app.audit import core
from app.audit.anchor import read_anchor
from app.audit.core import Checkpoint
from app.audit.log.reader import TreeReader, cosignatures_of
from app.audit.log.state import LogError, LogSettings, checkpoint_t, cosig_t, halt

log = logging.getLogger(__name__)


WITNESS_TIMEOUT = 5.0
# tlog-witness names no request type; the body ends in a checkpoint, which tlog-tiles
# serves as text/plain; charset=utf-8 (urllib would otherwise send a form type).
REQUEST_TYPE = "text/plain; charset=utf-8"
MAX_ANSWER = 1 << 16


@dataclass(frozen=True)
class WitnessView:
    """What one witness says it last cosigned for this log: (size, root), size 0
    when it never did, root None when it told only its size (a 409); `refused` when
    it answered that this log's newest checkpoint is inconsistent with what it saw;
    `problem` when it could not be asked or its answer makes no sense."""

    name: str
    size: int = 0
    root: bytes | None = core.EMPTY_ROOT
    refused: bool = False
    problem: str | None = None


def _post(url: str, body: bytes) -> tuple[int, str]:
    req = urllib.request.Request(  # noqa: S310 - callers check the scheme
        url.rstrip("/") + "/add-checkpoint",
        data=body,
        method="POST",
        headers={"Content-Type": REQUEST_TYPE},
    )
    try:
        with urllib.request.urlopen(req, timeout=WITNESS_TIMEOUT) as resp:  # noqa: S310
            return resp.status, resp.read(MAX_ANSWER).decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(64).decode("ascii", "replace").strip()


def witness_views(
    settings: LogSettings, conn: Connection | None = None, latest: Checkpoint | None = None
) -> list[WitnessView]:
    """Ask every configured witness with a URL what it last cosigned for this log:
    tlog-witness monitoring, `GET <prefix>/<sha256(origin) hex>/checkpoint`, one round
    trip each with a timeout. The answer counts only with the log's valid signature
    and the witness's valid cosignature. A witness without that interface (404) is
    probed with the log's newest signed checkpoint `latest` instead: add-checkpoint
    from `old 0` (its 409 names its size), then from that size with a consistency
    proof, so it says itself whether the log extends what it cosigned."""
    views = []
    origin_hash = hashlib.sha256(settings.origin.encode()).hexdigest()
    for url, witness in settings.witnesses:
        if url == "-":
            continue
        if not url.startswith(("http://", "https://")):
            views.append(WitnessView(witness.name, problem="not an http(s) URL"))
            continue
        target = f"{url.rstrip('/')}/{origin_hash}/checkpoint"
        try:
            with urllib.request.urlopen(target, timeout=WITNESS_TIMEOUT) as resp:  # noqa: S310 - scheme checked above
                text_body = resp.read(MAX_ANSWER).decode("utf-8", "strict")
            views.append(_view(settings, witness, text_body))
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                views.append(WitnessView(witness.name, problem=f"HTTP {exc.code}"))
            elif latest is None or latest.legacy or conn is None:
                views.append(WitnessView(witness.name))  # it never cosigned this log
            else:
                views.append(_probe(url, witness, conn, latest))
        except (OSError, ValueError) as exc:
            views.append(WitnessView(witness.name, problem=f"unreachable ({exc})"))
    return views


def _probe(url: str, witness: core.Verifier, conn: Connection, cp: Checkpoint) -> WitnessView:
    try:
        status, answer = _post(url, core.format_consistency_proof(0, [], cp).encode())
        if status == 409 and answer.isdigit():
            old = int(answer)
            if old > cp.tree_size:
                return WitnessView(witness.name, old, None)
            proof = (
                []
                if old in (0, cp.tree_size)
                else TreeReader(conn, cp.tree_size).consistency(old, cp.tree_size)
            )
            status, answer = _post(url, core.format_consistency_proof(old, proof, cp).encode())
    except (OSError, ValueError, LogError) as exc:
        return WitnessView(witness.name, problem=f"unreachable ({exc})")
    if status == 200:
        return WitnessView(witness.name, cp.tree_size, cp.root)
    if status == 422:
        return WitnessView(witness.name, refused=True)
    return WitnessView(witness.name, problem=f"HTTP {status} {answer[:60]}")


def _view(settings: LogSettings, witness: core.Verifier, text_body: str) -> WitnessView:
    try:
        cp = core.parse_signed_checkpoint(text_body, settings.trusted)
    except ValueError as exc:
        return WitnessView(witness.name, problem=f"answer is not a checkpoint ({exc})")
    settings.trusted.set_origin(cp.origin)
    if cp.origin != settings.origin or core.signature_problem(cp, settings.trusted):
        return WitnessView(witness.name, problem="answer is not signed by this log")
    if witness.name not in core.valid_cosigners(cp, settings.trusted):
        return WitnessView(witness.name, problem="answer has no valid cosignature of the witness")
    return WitnessView(witness.name, cp.tree_size, cp.root)


def views_problem(
    conn: Connection, views: Iterable[WitnessView], size: int, root: bytes
) -> str | None:
    """Why a tree of (size, root) must not be signed: a witness has cosigned a
    bigger tree of this log, or one this tree does not extend."""
    reader: TreeReader | None = None
    for view in views:
        if view.refused:
            return (
                f"witness {view.name} answers that this log's newest checkpoint is "
                "inconsistent with what it cosigned: the database diverges from the published log"
            )
        if view.problem is not None or view.size == 0:
            continue
        if view.size > size:
            return (
                f"witness {view.name} has cosigned {view.size} events of this log, the tree "
                f"holds {size}: the database is behind"
            )
        if view.root is None:
            continue  # only its size is known, and this tree is not smaller
        if view.size == size:
            at = root
        else:
            reader = reader or TreeReader(conn, size)
            at = reader.subtree(0, view.size)
        if at != view.root:
            return (
                f"witness {view.name} cosigned a tree of {view.size} events that this tree "
                "does not extend: the database diverges from the published log"
            )
    return None


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
        sigs = cosignatures_of(conn, cp.index)
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
                halt(
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
                url.rstrip("/") + "/add-checkpoint",
                data=body,
                method="POST",
                headers={"Content-Type": REQUEST_TYPE},
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
                    halt(
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
