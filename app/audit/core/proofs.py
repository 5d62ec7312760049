"""The text forms outsiders check: C2SP tlog-proof inclusion proofs, consistency
proofs and key receipts."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from .checkpoints import (
    Checkpoint,
    parse_decimal,
    parse_signed_checkpoint,
    signature_problem,
    valid_cosigners,
)
from .events import check_event_bytes
from .hashing import (
    EMPTY_ROOT,
    HASH_SIZE,
    MAX_PROOF,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)
from .notes import HEX64_RE, MAX_LINE, KeyRing
from .report import Damage, Report

RECEIPT_FORMAT = "keyledger-audit-receipts/1"
PROOF_HEADER = "c2sp.org/tlog-proof@v1"


def parse_b64_hash(line: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(line, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"{what} is not base64") from exc
    if len(raw) != HASH_SIZE or base64.b64encode(raw).decode() != line:
        raise ValueError(f"{what} is not a 32-byte hash in canonical base64")
    return raw


def format_inclusion_proof(
    index: int, path: list[bytes], cp: Checkpoint, extra: bytes | None
) -> str:
    """C2SP tlog-proof: header, optional `extra` (here: the event's canonical bytes),
    index, path lines, blank line, the signed checkpoint."""
    lines = [PROOF_HEADER]
    if extra is not None:
        lines.append("extra " + base64.b64encode(extra).decode())
    lines.append(f"index {index}")
    lines += [base64.b64encode(p).decode() for p in path]
    return "\n".join(lines) + "\n\n" + cp.signed_note()


@dataclass(frozen=True)
class InclusionProof:
    index: int
    path: list[bytes]
    checkpoint: Checkpoint
    extra: bytes | None


def parse_inclusion_proof(text: str, keys: KeyRing | None = None) -> InclusionProof:
    if not isinstance(text, str) or len(text) > MAX_LINE:
        raise ValueError("not a proof text")
    head, sep, note = text.partition("\n\n")
    if not sep:
        raise ValueError("proof has no blank line before its checkpoint")
    lines = head.split("\n")
    if lines[0] != PROOF_HEADER:
        raise ValueError(f"proof does not start with {PROOF_HEADER}")
    pos = 1
    extra = None
    if pos < len(lines) and lines[pos].startswith("extra "):
        try:
            extra = base64.b64decode(lines[pos][6:], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("extra is not base64") from exc
        pos += 1
    if pos >= len(lines) or not lines[pos].startswith("index "):
        raise ValueError("proof has no index line")
    index = parse_decimal(lines[pos][6:], "index")
    path = [parse_b64_hash(line, "proof hash") for line in lines[pos + 1 :]]
    if len(path) > 64:
        raise ValueError("proof path too long")
    return InclusionProof(index, path, parse_signed_checkpoint(note, keys), extra)


def check_inclusion(
    proof: InclusionProof, keys: KeyRing, leaf: bytes | None = None, min_witnesses: int = 0
) -> tuple[bytes, list[str]]:
    """Check a parsed proof: the checkpoint is signed by the log (and cosigned by
    enough trusted witnesses), and the path leads from the leaf to its root. The leaf
    is SHA-256(0x00 || extra) unless given. Returns (leaf hash, cosigner names)."""
    cp = proof.checkpoint
    keys.set_origin(cp.origin)
    problem = signature_problem(cp, keys)
    if problem:
        raise Damage(problem[0], problem[1], proof.index)
    if proof.extra is not None:
        computed = leaf_hash(proof.extra)
        if leaf is not None and computed != leaf:
            raise Damage(
                "leaf_hash_mismatch", "event bytes do not match the leaf hash", proof.index
            )
        leaf = computed
        _, bad = check_event_bytes(proof.extra)
        if bad:
            raise Damage("bytes_not_canonical", bad, proof.index)
    if leaf is None:
        raise Damage("malformed", "the proof carries no event bytes and no leaf hash was given")
    if not verify_inclusion(proof.index, cp.tree_size, leaf, proof.path, cp.root):
        raise Damage("root_mismatch", "the path does not lead to the signed root", proof.index)
    names = valid_cosigners(cp, keys)
    if len(names) < min_witnesses:
        raise Damage(
            "witnesses_missing",
            f"the checkpoint carries {len(names)} valid witness cosignatures, "
            f"{min_witnesses} required",
        )
    return leaf, names


def verify_proof_text(
    text: str, keys: KeyRing, leaf: bytes | None = None, min_witnesses: int = 0
) -> Report:
    report = Report(ok=False)
    try:
        try:
            proof = parse_inclusion_proof(text, keys)
        except ValueError as exc:
            raise Damage("malformed", str(exc)) from None
        check_inclusion(proof, keys, leaf, min_witnesses)
        cp = proof.checkpoint
        report.ok = True
        report.events = 1
        report.checkpoints = 1
        report.root = cp.root
        report.tree_size = cp.tree_size
        report.last_checkpoint_time = cp.time
    except Damage as damage:
        report.damage = damage
    return report


def format_consistency_proof(old_size: int, proof: list[bytes], cp: Checkpoint) -> str:
    """The tlog-witness add-checkpoint body: `old N`, proof lines, blank, checkpoint."""
    lines = [f"old {old_size}", *(base64.b64encode(p).decode() for p in proof)]
    return "\n".join(lines) + "\n\n" + cp.signed_note()


def parse_consistency_proof(
    text: str, keys: KeyRing | None = None
) -> tuple[int, list[bytes], Checkpoint]:
    if not isinstance(text, str) or len(text) > MAX_LINE:
        raise ValueError("not a consistency proof text")
    head, sep, note = text.partition("\n\n")
    if not sep:
        raise ValueError("no blank line before the checkpoint")
    lines = head.split("\n")
    if not lines[0].startswith("old "):
        raise ValueError("first line is not `old <size>`")
    old = parse_decimal(lines[0][4:], "old size")
    proof = [parse_b64_hash(line, "proof hash") for line in lines[1:]]
    if len(proof) > MAX_PROOF:
        raise ValueError("more than 63 proof lines")
    return old, proof, parse_signed_checkpoint(note, keys)


def verify_consistency_text(text: str, keys: KeyRing, trusted: Checkpoint) -> Report:
    """Check a consistency proof document against a checkpoint the auditor trusts."""
    report = Report(ok=False)
    try:
        try:
            old, proof, cp = parse_consistency_proof(text, keys)
        except ValueError as exc:
            raise Damage("malformed", str(exc)) from None
        for c in (trusted, cp):
            keys.set_origin(c.origin)
            problem = signature_problem(c, keys)
            if problem:
                raise Damage(problem[0], problem[1])
        if trusted.origin != cp.origin or old != trusted.tree_size:
            raise Damage("malformed", "the proof does not start at the trusted checkpoint")
        ok = (
            (old == 0 and not proof)
            if old == 0
            else verify_consistency(old, cp.tree_size, trusted.root, cp.root, proof)
        )
        if not ok:
            raise Damage(
                "fork", f"checkpoint {cp.index} does not extend the trusted checkpoint", old
            )
        report.ok = True
        report.checkpoints = 1
        report.root = cp.root
        report.tree_size = cp.tree_size
    except Damage as damage:
        report.damage = damage
    return report


def verify_receipts(doc: Any, keys: KeyRing, min_witnesses: int = 0) -> Report:
    """A key owner's receipts (see docs/audit.md): every proof checks against the one
    signed checkpoint, and every event is about the key the receipts name."""
    report = Report(ok=False)
    try:
        if not isinstance(doc, dict) or doc.get("format") != RECEIPT_FORMAT:
            raise Damage("malformed", f"not a {RECEIPT_FORMAT} document")
        target = doc.get("target")
        items = doc.get("receipts")
        if not isinstance(target, str) or not isinstance(items, list):
            raise Damage("malformed", "receipts need a target and a list of receipts")
        root = None
        for i, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(item.get("proof"), str):
                raise Damage("malformed", f"receipt {i} has no proof text")
            try:
                proof = parse_inclusion_proof(item["proof"], keys)
            except ValueError as exc:
                raise Damage("malformed", f"receipt {i}: {exc}") from None
            if proof.extra is None:
                # Pruned by retention: the proof shows the leaf hash (which the owner
                # may hold from an earlier receipt) is still in the log, nothing more.
                leaf = item.get("leaf_hash")
                if (
                    item.get("pruned") is not True
                    or not isinstance(leaf, str)
                    or not HEX64_RE.match(leaf)
                ):
                    raise Damage("malformed", f"receipt {i} carries no event bytes")
                check_inclusion(proof, keys, bytes.fromhex(leaf), min_witnesses)
                if item.get("seq") != proof.index:
                    raise Damage("malformed", f"receipt {i}'s seq differs from its proof")
                report.pruned += 1
            else:
                check_inclusion(proof, keys, None, min_witnesses)
                body = json.loads(proof.extra)
                if not _about(body, target):
                    raise Damage(
                        "malformed", f"receipt {i} is about {body.get('target')!r}", proof.index
                    )
                if item.get("seq") != proof.index or item.get("action") != body.get("action"):
                    raise Damage("malformed", f"receipt {i}'s seq or action differs from its proof")
            root = root or proof.checkpoint.root
            report.events += 1
            report.tree_size = proof.checkpoint.tree_size
        report.ok = True
        report.root = root or EMPTY_ROOT
    except Damage as damage:
        report.damage = damage
    return report


def _about(body: dict[str, Any], target: str) -> bool:
    """An event is about the key when the key is its target, or when it is the
    rotation that made the key (the successor it names)."""
    if body.get("target") == target:
        return True
    details = body.get("details")
    return (
        body.get("action") == "key.rotated"
        and isinstance(details, dict)
        and details.get("successor") == target
    )
