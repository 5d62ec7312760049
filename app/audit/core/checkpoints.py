"""C2SP tlog-checkpoints with this log's extension lines, and the chain check
over them in index order."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature

from .events import TIME_RE
from .hashing import HASH_SIZE, ZERO_HASH
from .notes import (
    HEX64_RE,
    KEY_NAME_RE,
    LEGACY_KEY_ID_RE,
    KeyRing,
    Signature,
    cosignature_valid,
    split_signed_note,
)
from .report import Damage

DECIMAL_RE = re.compile(r"^(0|[1-9][0-9]{0,18})\Z")


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement: the log `origin` held `tree_size` events with `root`.

    `note` is the signed note text (C2SP tlog-checkpoint with our extension lines
    `index`, `time` and `prev`), `signature` the log's 64-byte Ed25519 signature,
    `key_id` its 4-byte signed-note key id as 8 hex digits. Checkpoints written
    before signed notes (`legacy`) have a seven-line note with a `key` line and a
    16-hex-digit key id; they are read and checked, never written."""

    origin: str
    tree_size: int
    root: bytes
    index: int
    time: str
    key_id: str
    prev: bytes
    note: bytes
    signature: bytes
    legacy: bool = False
    cosignatures: tuple[Signature, ...] = ()

    @property
    def digest(self) -> bytes:
        """What the next checkpoint's `prev` line names: SHA-256 of this note."""
        return hashlib.sha256(self.note).digest()

    def log_signature(self) -> Signature:
        return Signature(self.origin, bytes.fromhex(self.key_id), self.signature)

    def signed_note(self) -> str:
        """The C2SP signed note: text, blank line, the log's signature line, then
        any witness cosignature lines."""
        if self.legacy:
            raise ValueError("a format-1 checkpoint has no signed-note form")
        lines = [self.log_signature().line(), *(c.line() for c in self.cosignatures)]
        return self.note.decode() + "\n" + "".join(lines)

    def to_json(self) -> dict[str, str]:
        if self.legacy:
            return {
                "note": self.note.decode(),
                "signature": base64.b64encode(self.signature).decode(),
            }
        return {"signed_note": self.signed_note()}

    def with_cosignatures(self, sigs: Iterable[Signature]) -> Checkpoint:
        return Checkpoint(
            self.origin,
            self.tree_size,
            self.root,
            self.index,
            self.time,
            self.key_id,
            self.prev,
            self.note,
            self.signature,
            self.legacy,
            tuple(sigs),
        )


def format_note(
    origin: str, tree_size: int, root: bytes, index: int, time: str, prev: bytes
) -> bytes:
    """The signed text: a C2SP tlog-checkpoint body plus three extension lines."""
    return (
        f"{origin}\n{tree_size}\n{base64.b64encode(root).decode()}\n"
        f"index {index}\ntime {time}\nprev {prev.hex()}\n"
    ).encode()


def parse_decimal(text: str, what: str) -> int:
    if not DECIMAL_RE.match(text):
        raise ValueError(f"{what} is not a plain decimal number")
    return int(text)


def _note_lines(note: bytes) -> list[str]:
    try:
        text = note.decode("utf-8", "strict")
    except UnicodeDecodeError as exc:
        raise ValueError("checkpoint note is not UTF-8") from exc
    if not text.endswith("\n"):
        raise ValueError("checkpoint note must end with a newline")
    return text[:-1].split("\n")


def _head(lines: list[str]) -> tuple[str, int, bytes]:
    origin, size_s, root_s = lines[:3]
    if not origin or not KEY_NAME_RE.match(origin) or not origin.isprintable():
        raise ValueError("checkpoint origin is empty, not printable or has spaces")
    tree_size = parse_decimal(size_s, "tree size")
    try:
        root = base64.b64decode(root_s, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("root hash is not base64") from exc
    if len(root) != HASH_SIZE or base64.b64encode(root).decode() != root_s:
        raise ValueError("root hash is not 32 bytes in canonical base64")
    return origin, tree_size, root


def parse_tlog_checkpoint(note: bytes) -> tuple[str, int, bytes]:
    """Any C2SP tlog-checkpoint note: (origin, tree size, root hash). Extension
    lines after the root, whatever they say, are allowed (a witness must take them)."""
    lines = _note_lines(note)
    if len(lines) < 3:
        raise ValueError(f"checkpoint note has {len(lines)} lines, expected at least 3")
    if any(not line for line in lines[3:]):
        raise ValueError("checkpoint note has an empty extension line")
    return _head(lines)


def _parse_note(note: bytes) -> tuple[str, int, bytes, int, str, str | None, bytes]:
    """Strictly parse a checkpoint note of this log (either form); anything else is
    refused."""
    lines = _note_lines(note)
    if len(lines) not in (6, 7):
        raise ValueError(f"checkpoint note has {len(lines)} lines, expected 6")
    legacy = len(lines) == 7
    origin, tree_size, root = _head(lines)
    rest = lines[3:]
    names = ("index", "time", "key", "prev") if legacy else ("index", "time", "prev")
    fields: dict[str, str] = {}
    for line, name in zip(rest, names, strict=True):
        label, sep, value = line.partition(" ")
        if label != name or not sep:
            raise ValueError(f"checkpoint line {name!r} missing or out of order")
        fields[name] = value
    index = parse_decimal(fields["index"], "checkpoint index")
    if not TIME_RE.fullmatch(fields["time"]):
        raise ValueError("checkpoint time is not UTC ISO-8601 with microseconds")
    try:
        datetime.strptime(fields["time"], "%Y-%m-%dT%H:%M:%S.%fZ")
    except ValueError as exc:
        raise ValueError("checkpoint time is not a real time") from exc
    if legacy and not LEGACY_KEY_ID_RE.match(fields["key"]):
        raise ValueError("key id is not 16 lowercase hex digits")
    if not HEX64_RE.match(fields["prev"]):
        raise ValueError("prev is not 64 lowercase hex digits")
    prev = bytes.fromhex(fields["prev"])
    return origin, tree_size, root, index, fields["time"], fields.get("key"), prev


def load_checkpoint(note: bytes, signature: bytes, key_id: str | None = None) -> Checkpoint:
    """A checkpoint from its stored parts. For the signed-note form `key_id` is the
    8-hex-digit signed-note key id (stored beside the note)."""
    origin, size, root, index, time, legacy_kid, prev = _parse_note(note)
    if len(signature) != 64:
        raise ValueError("signature is not 64 bytes")
    if legacy_kid is not None:
        return Checkpoint(origin, size, root, index, time, legacy_kid, prev, note, signature, True)
    if key_id is None or not re.fullmatch(r"[0-9a-f]{8}", key_id):
        raise ValueError("signed-note key id is not 8 hex digits")
    return Checkpoint(origin, size, root, index, time, key_id, prev, note, signature)


def parse_signed_checkpoint(text: str, keys: KeyRing | None = None) -> Checkpoint:
    """A checkpoint from its signed-note text. The log's signature is the first line
    named after the origin whose key id is trusted (or, with no keys, the first named
    after the origin); other lines are kept as cosignatures."""
    body, sigs = split_signed_note(text)
    origin = _parse_note(body)[0]
    chosen: Signature | None = None
    for sig in sigs:
        if sig.name != origin or len(sig.data) != 64:
            continue
        if keys is None or (origin, sig.key_id) in keys.log:
            chosen = sig
            break
        if chosen is None:
            chosen = sig
    if chosen is None:
        raise ValueError("no signature line by the log (key name = origin)")
    cp = load_checkpoint(body, chosen.data, chosen.key_id.hex())
    return cp.with_cosignatures(s for s in sigs if s is not chosen)


def checkpoint_from_json(obj: Any) -> Checkpoint:
    """An export or anchor line: {"signed_note": …} or the format-1 {"note", "signature"}."""
    if not isinstance(obj, dict):
        raise ValueError("checkpoint is not an object")
    if "signed_note" in obj:
        text = obj.get("signed_note")
        if not isinstance(text, str):
            raise ValueError("signed_note is not a string")
        return parse_signed_checkpoint(text)
    note, sig = obj.get("note"), obj.get("signature")
    if not isinstance(note, str) or not isinstance(sig, str):
        raise ValueError("checkpoint needs string fields note and signature")
    try:
        signature = base64.b64decode(sig, validate=True)
        note_bytes = note.encode("utf-8")
    except (binascii.Error, ValueError) as exc:
        raise ValueError("signature is not base64 or note not Unicode") from exc
    cp = load_checkpoint(note_bytes, signature)
    if not cp.legacy:
        raise ValueError("a signed-note checkpoint must be given as signed_note")
    return cp


def signature_problem(cp: Checkpoint, keys: KeyRing) -> tuple[str, str] | None:
    """(kind, message) when the log's signature does not hold, else None."""
    if cp.legacy:
        key = keys.legacy.get(cp.key_id)
    else:
        key = keys.log.get((cp.origin, bytes.fromhex(cp.key_id)))
    if key is None:
        return "unknown_key", f"checkpoint {cp.index} is signed by unknown key {cp.key_id}"
    try:
        key.verify(cp.signature, cp.note)
    except InvalidSignature:
        return "bad_signature", f"checkpoint {cp.index} has an invalid signature"
    return None


def valid_cosigners(cp: Checkpoint, keys: KeyRing) -> list[str]:
    """Names of the trusted witnesses whose cosignature on this checkpoint verifies.
    Unknown signature lines are ignored; a known one that fails is refused."""
    names = []
    for sig in cp.cosignatures:
        witness = keys.witnesses.get((sig.name, sig.key_id))
        if witness is None:
            continue
        if cosignature_valid(cp.note, sig, witness) is None:
            raise Damage("bad_signature", f"checkpoint {cp.index}: cosignature by {sig.name} fails")
        names.append(sig.name)
    return sorted(set(names))


class CheckpointChain:
    """Checks checkpoints in index order: signature, origin, contiguous indexes, the
    prev link, non-decreasing size and time, and one root per size."""

    def __init__(self, keys: KeyRing, origin: str | None = None) -> None:
        self.keys = keys
        self.origin = origin
        self.last: Checkpoint | None = None
        self.count = 0

    def add(self, cp: Checkpoint) -> None:
        if self.origin is None:
            self.origin = cp.origin
        elif cp.origin != self.origin:
            raise Damage(
                "checkpoint_inconsistent", f"checkpoint {cp.index} names origin {cp.origin!r}"
            )
        self.keys.set_origin(cp.origin)
        problem = signature_problem(cp, self.keys)
        if problem:
            raise Damage(problem[0], problem[1], cp.tree_size)
        last = self.last
        if last is not None:
            if cp.index != last.index + 1:
                raise Damage(
                    "checkpoint_missing",
                    f"checkpoint {last.index + 1} is missing (next is {cp.index})",
                    last.tree_size,
                )
            if cp.prev != last.digest:
                raise Damage(
                    "checkpoint_missing",
                    f"checkpoint {cp.index} does not follow checkpoint {last.index}",
                    last.tree_size,
                )
            if cp.tree_size < last.tree_size:
                raise Damage(
                    "checkpoint_inconsistent",
                    f"checkpoint {cp.index} shrinks the log from {last.tree_size} "
                    f"to {cp.tree_size} events",
                    cp.tree_size,
                )
            if cp.tree_size == last.tree_size and cp.root != last.root:
                raise Damage(
                    "checkpoint_inconsistent",
                    f"checkpoints {last.index} and {cp.index} sign different roots "
                    f"for {cp.tree_size} events",
                    cp.tree_size,
                )
            if cp.time < last.time:
                raise Damage(
                    "checkpoint_inconsistent",
                    f"checkpoint {cp.index} is older than its predecessor",
                )
        elif cp.index == 0 and cp.prev != ZERO_HASH:
            raise Damage("checkpoint_inconsistent", "checkpoint 0 names a predecessor")
        self.last = cp
        self.count += 1
