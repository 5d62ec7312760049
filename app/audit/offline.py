"""Standalone verifier for Keyledger audit exports and inclusion proofs.

This one file is the whole offline verifier: it imports only the Python standard
library and `cryptography` (for Ed25519), never Flask, SQLAlchemy or the rest of the
app, so an auditor can copy it alone and run

    python offline.py export  FILE --public-key KEY.pem [--public-key OLD.pem ...]
    python offline.py proof   FILE --public-key KEY.pem

The formats it reads are specified byte for byte in docs/audit.md. The app imports
its hashing and checkpoint code from here too, so the writer and the checker cannot
drift apart. Every malformed input is answered with a `Damage` naming what is wrong;
no input may crash it (a verifier bug is a security bug).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

EXPORT_FORMAT = "keyledger-audit-export/1"
PROOF_FORMAT = "keyledger-audit-proof/1"
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
ZERO_HASH = bytes(HASH_SIZE)
TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
KEY_ID_RE = re.compile(r"^[0-9a-f]{16}$")
HEX64_RE = re.compile(r"^[0-9a-f]{64}$")
DECIMAL_RE = re.compile(r"^(0|[1-9][0-9]{0,18})$")
EVENT_FIELDS = frozenset(
    ("v", "event_id", "time", "action", "sensitivity", "actor", "actor_ip", "target", "outcome")
) | {"details"}
SENSITIVITIES = ("low", "medium", "high", "critical")
OUTCOMES = ("success", "failure", "denied")
MAX_LINE = 1 << 20  # no legitimate export line comes near 1 MiB


# --------------------------------------------------------------------------- hashing


def leaf_hash(data: bytes) -> bytes:
    """RFC 6962 leaf hash: SHA-256(0x00 || bytes)."""
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 interior node: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def largest_power_of_two_below(n: int) -> int:
    """The k of RFC 6962's split: the largest power of two strictly less than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def mth(leaves: list[bytes]) -> bytes:
    """Merkle tree hash of a list of leaf hashes (RFC 6962 MTH; odd nodes promoted)."""
    f = Frontier()
    for leaf in leaves:
        f.append(leaf)
    return f.root()


class Frontier:
    """The compact right edge of an RFC 6962 tree: one perfect subtree per set bit of
    the size, biggest first. Appending is O(log n); the root folds the edge right to
    left. `on_node(level, index, hash)` sees every perfect subtree completed at or
    above `min_level`, which the app stores so proofs need O(log n) reads."""

    __slots__ = ("hashes", "min_level", "on_node", "size")

    def __init__(
        self,
        size: int = 0,
        hashes: list[bytes] | None = None,
        on_node: Callable[[int, int, bytes], None] | None = None,
        min_level: int = 8,
    ) -> None:
        hashes = list(hashes or [])
        if size < 0 or len(hashes) != bin(size).count("1"):
            raise ValueError("frontier does not match its size")
        if any(not isinstance(h, bytes) or len(h) != HASH_SIZE for h in hashes):
            raise ValueError("frontier hashes must be 32 bytes each")
        self.size = size
        self.hashes = hashes
        self.on_node = on_node
        self.min_level = min_level

    @classmethod
    def from_bytes(cls, size: int, blob: bytes, **kw: Any) -> Frontier:
        if len(blob) % HASH_SIZE:
            raise ValueError("frontier blob is not a whole number of hashes")
        hashes = [blob[i : i + HASH_SIZE] for i in range(0, len(blob), HASH_SIZE)]
        return cls(size, hashes, **kw)

    def to_bytes(self) -> bytes:
        return b"".join(self.hashes)

    def append(self, leaf: bytes) -> None:
        h = leaf
        s = self.size
        level = 0
        hashes = self.hashes
        while s & 1:
            h = hashlib.sha256(NODE_PREFIX + hashes.pop() + h).digest()
            s >>= 1
            level += 1
            if self.on_node is not None and level >= self.min_level:
                self.on_node(level, s, h)
        hashes.append(h)
        self.size += 1

    def root(self) -> bytes:
        if not self.hashes:
            return EMPTY_ROOT
        r = self.hashes[-1]
        for h in reversed(self.hashes[:-1]):
            r = hashlib.sha256(NODE_PREFIX + h + r).digest()
        return r


def verify_inclusion(index: int, size: int, leaf: bytes, path: list[bytes], root: bytes) -> bool:
    """RFC 9162 section 2.1.3.2, step for step."""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


# --------------------------------------------------------------------------- keys


def raw_public_key(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(key: Ed25519PublicKey) -> str:
    """First 8 bytes of SHA-256 over the raw 32-byte public key, as 16 hex digits."""
    return hashlib.sha256(raw_public_key(key)).digest()[:8].hex()


def public_key_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


_PEM_RE = re.compile(
    r"-----BEGIN PUBLIC KEY-----\s+[A-Za-z0-9+/=\s]+?-----END PUBLIC KEY-----", re.DOTALL
)


def load_public_keys(pem_text: str) -> dict[str, Ed25519PublicKey]:
    """Every Ed25519 public key in a PEM text (one or many blocks), by key id."""
    keys: dict[str, Ed25519PublicKey] = {}
    for block in _PEM_RE.findall(pem_text):
        try:
            key = serialization.load_pem_public_key(block.encode())
        except (ValueError, TypeError) as exc:
            raise ValueError(f"not a valid public key: {exc}") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("only Ed25519 public keys are accepted")
        keys[key_id(key)] = key
    if not keys:
        raise ValueError("no PEM public key found")
    return keys


# --------------------------------------------------------------------------- checkpoints


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement: the log `origin` held `tree_size` events with `root`."""

    origin: str
    tree_size: int
    root: bytes
    index: int
    time: str
    key_id: str
    prev: bytes
    note: bytes
    signature: bytes

    @property
    def digest(self) -> bytes:
        """What the next checkpoint's `prev` line names: SHA-256 of this note."""
        return hashlib.sha256(self.note).digest()

    def to_json(self) -> dict[str, str]:
        return {
            "note": self.note.decode(),
            "signature": base64.b64encode(self.signature).decode(),
        }


def format_note(
    origin: str, tree_size: int, root: bytes, index: int, time: str, kid: str, prev: bytes
) -> bytes:
    """The signed bytes. The first three lines are a C2SP tlog-checkpoint body."""
    return (
        f"{origin}\n{tree_size}\n{base64.b64encode(root).decode()}\n"
        f"index {index}\ntime {time}\nkey {kid}\nprev {prev.hex()}\n"
    ).encode()


def _decimal(text: str, what: str) -> int:
    if not DECIMAL_RE.match(text):
        raise ValueError(f"{what} is not a plain decimal number")
    return int(text)


def parse_note(note: bytes) -> tuple[str, int, bytes, int, str, str, bytes]:
    """Strictly parse a checkpoint note; anything but the exact format is refused."""
    try:
        text = note.decode("utf-8", "strict")
    except UnicodeDecodeError as exc:
        raise ValueError("checkpoint note is not UTF-8") from exc
    if not text.endswith("\n"):
        raise ValueError("checkpoint note must end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) != 7:
        raise ValueError(f"checkpoint note has {len(lines)} lines, expected 7")
    origin, size_s, root_s, index_l, time_l, key_l, prev_l = lines
    if not origin or not origin.isprintable() or origin != origin.strip():
        raise ValueError("checkpoint origin is empty or not printable")
    tree_size = _decimal(size_s, "tree size")
    try:
        root = base64.b64decode(root_s, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("root hash is not base64") from exc
    if len(root) != HASH_SIZE or base64.b64encode(root).decode() != root_s:
        raise ValueError("root hash is not 32 bytes in canonical base64")
    fields: dict[str, str] = {}
    for line, name in ((index_l, "index"), (time_l, "time"), (key_l, "key"), (prev_l, "prev")):
        label, sep, value = line.partition(" ")
        if label != name or not sep:
            raise ValueError(f"checkpoint line {name!r} missing or out of order")
        fields[name] = value
    index = _decimal(fields["index"], "checkpoint index")
    if not TIME_RE.match(fields["time"]):
        raise ValueError("checkpoint time is not UTC ISO-8601 with microseconds")
    try:
        datetime.strptime(fields["time"], "%Y-%m-%dT%H:%M:%S.%fZ")
    except ValueError as exc:
        raise ValueError("checkpoint time is not a real time") from exc
    if not KEY_ID_RE.match(fields["key"]):
        raise ValueError("key id is not 16 lowercase hex digits")
    if not HEX64_RE.match(fields["prev"]):
        raise ValueError("prev is not 64 lowercase hex digits")
    return (
        origin,
        tree_size,
        root,
        index,
        fields["time"],
        fields["key"],
        bytes.fromhex(fields["prev"]),
    )


def load_checkpoint(note: bytes, signature: bytes) -> Checkpoint:
    origin, size, root, index, time, kid, prev = parse_note(note)
    if len(signature) != 64:
        raise ValueError("signature is not 64 bytes")
    return Checkpoint(origin, size, root, index, time, kid, prev, note, signature)


def checkpoint_from_json(obj: Any) -> Checkpoint:
    if not isinstance(obj, dict):
        raise ValueError("checkpoint is not an object")
    note, sig = obj.get("note"), obj.get("signature")
    if not isinstance(note, str) or not isinstance(sig, str):
        raise ValueError("checkpoint needs string fields note and signature")
    try:
        signature = base64.b64decode(sig, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("signature is not base64") from exc
    try:
        note_bytes = note.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("checkpoint note is not valid Unicode") from exc
    return load_checkpoint(note_bytes, signature)


def signature_problem(cp: Checkpoint, keys: dict[str, Ed25519PublicKey]) -> tuple[str, str] | None:
    """(kind, message) when the signature does not hold, else None."""
    key = keys.get(cp.key_id)
    if key is None:
        return "unknown_key", f"checkpoint {cp.index} is signed by unknown key {cp.key_id}"
    try:
        key.verify(cp.signature, cp.note)
    except InvalidSignature:
        return "bad_signature", f"checkpoint {cp.index} has an invalid signature"
    return None


# --------------------------------------------------------------------------- events


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for k, v in pairs:
        if k in result:
            raise ValueError(f"duplicate key {k!r}")
        result[k] = v
    return result


def strict_loads(data: str | bytes) -> Any:
    """JSON with no NaN/Infinity, no floats and no duplicate keys (each a way two
    parsers could read one text differently)."""
    return json.loads(
        data,
        parse_constant=_no_constants,
        parse_float=_no_constants,
        object_pairs_hook=_no_duplicates,
    )


def canonical_dumps(value: Any) -> bytes:
    """RFC 8785-style for our value set: sorted keys, no spaces, UTF-8, no floats."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def event_problem(body: Any) -> str | None:
    """Why decoded event bytes are not a well-formed version-1 event, or None."""
    if not isinstance(body, dict):
        return "event is not a JSON object"
    if set(body) != EVENT_FIELDS:
        return "event fields differ from the version-1 set"
    if body["v"] != 1 or isinstance(body["v"], bool):
        return "event version is not 1"
    for name in ("event_id", "time", "action", "actor"):
        if not isinstance(body[name], str) or not body[name]:
            return f"event {name} is not a non-empty string"
    for name in ("actor_ip", "target"):
        if body[name] is not None and not isinstance(body[name], str):
            return f"event {name} is not a string or null"
    if not TIME_RE.match(body["time"]):
        return "event time is not UTC ISO-8601 with microseconds"
    if body["sensitivity"] not in SENSITIVITIES:
        return "event sensitivity is not one of low, medium, high, critical"
    if body["outcome"] not in OUTCOMES:
        return "event outcome is not one of success, failure, denied"
    if not isinstance(body["details"], dict):
        return "event details is not an object"
    return None


def check_event_bytes(data: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """Decode and check canonical event bytes: (body, None) or (None, problem)."""
    try:
        body = strict_loads(data.decode("utf-8", "strict"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None, "event bytes are not strict UTF-8 JSON"
    problem = event_problem(body)
    if problem:
        return None, problem
    if canonical_dumps(body) != data:
        return None, "event bytes are not in canonical form"
    return body, None


# --------------------------------------------------------------------------- reports


class Damage(Exception):
    """The first thing found wrong: a kind (stable, for machines), the first bad
    sequence number when one applies, and a sentence for people."""

    def __init__(self, kind: str, message: str, seq: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.seq = seq

    def __str__(self) -> str:
        where = f" at seq {self.seq}" if self.seq is not None else ""
        return f"{self.kind}{where}: {self.message}"


@dataclass
class Report:
    ok: bool
    events: int = 0
    checkpoints: int = 0
    root: bytes = EMPTY_ROOT
    tree_size: int = 0
    seconds: float = 0.0
    last_checkpoint_time: str | None = None
    damage: Damage | None = None
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if self.ok:
            extra = "".join(f"; {n}" for n in self.notes)
            return (
                f"audit trail intact: {self.events} events, {self.checkpoints} checkpoints, "
                f"root {self.root.hex()}, verified in {self.seconds:.2f}s{extra}"
            )
        assert self.damage is not None
        where = f"seq {self.damage.seq}" if self.damage.seq is not None else "the trail"
        return f"audit trail DAMAGED at {where}: {self.damage.kind}: {self.damage.message}"


class CheckpointChain:
    """Checks checkpoints in index order: signature, origin, contiguous indexes, the
    prev link, non-decreasing size and time, and one root per size."""

    def __init__(self, keys: dict[str, Ed25519PublicKey], origin: str | None = None) -> None:
        self.keys = keys
        self.origin = origin
        self.last: Checkpoint | None = None
        self.count = 0

    def add(self, cp: Checkpoint) -> None:
        problem = signature_problem(cp, self.keys)
        if problem:
            raise Damage(problem[0], problem[1], cp.tree_size)
        if self.origin is None:
            self.origin = cp.origin
        elif cp.origin != self.origin:
            raise Damage(
                "checkpoint_inconsistent", f"checkpoint {cp.index} names origin {cp.origin!r}"
            )
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


# --------------------------------------------------------------------------- export


def _hex32(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or not HEX64_RE.match(value):
        raise ValueError(f"{what} is not 64 lowercase hex digits")
    return bytes.fromhex(value)


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 63:
        raise ValueError(f"{what} is not a non-negative integer")
    return value


def read_lines(stream: Iterable[bytes]) -> Iterator[tuple[int, Any]]:
    """(line number, decoded JSON) for each line; a Damage for anything not JSON."""
    for number, raw in enumerate(stream, 1):
        if len(raw) > MAX_LINE:
            raise Damage("malformed", f"line {number} is longer than {MAX_LINE} bytes")
        line = raw.rstrip(b"\n")
        if line.endswith(b"\r"):
            raise Damage("malformed", f"line {number} ends with CR")
        if not line:
            raise Damage("malformed", f"line {number} is empty")
        try:
            yield number, strict_loads(line.decode("utf-8", "strict"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise Damage("malformed", f"line {number} is not strict UTF-8 JSON ({exc})") from None


def verify_export(
    stream: Iterable[bytes],
    keys: dict[str, Ed25519PublicKey],
    clock: Callable[[], float] | None = None,
) -> Report:
    """Verify an export (JSON lines, see docs/audit.md) against trusted public keys.

    Keys inside the export are never trusted: only `keys`, which the auditor got
    some other way. Memory stays flat: one frontier and the last checkpoint.
    """
    import time

    clock = clock or time.perf_counter
    started = clock()
    report = Report(ok=False)
    try:
        _verify_export(stream, keys, report)
        report.ok = True
    except Damage as damage:
        report.damage = damage
    report.seconds = clock() - started
    return report


def _verify_export(stream: Iterable[bytes], keys: dict[str, Ed25519PublicKey], rep: Report) -> None:
    lines = read_lines(stream)
    first = next(lines, None)
    if first is None:
        raise Damage("malformed", "the export is empty")
    _, header = first
    if not isinstance(header, dict) or header.get("type") != "header":
        raise Damage("malformed", "line 1 is not the export header")
    try:
        if header.get("format") != EXPORT_FORMAT:
            raise ValueError(f"format is not {EXPORT_FORMAT}")
        since = _int(header.get("since"), "since")
        raw_frontier = header.get("frontier")
        if not isinstance(raw_frontier, list):
            raise ValueError("frontier is not a list")
        frontier = Frontier(since, [_hex32(h, "frontier hash") for h in raw_frontier])
        origin = header.get("origin")
        if not isinstance(origin, str) or not origin:
            raise ValueError("origin is not a non-empty string")
    except ValueError as exc:
        raise Damage("malformed", f"header: {exc}") from None

    chain = CheckpointChain(keys, origin)
    covered = since  # events up to here are covered by a verified checkpoint
    for number, obj in lines:
        kind = obj.get("type") if isinstance(obj, dict) else None
        if kind == "event":
            seq = frontier.size
            try:
                got = _int(obj.get("seq"), "seq")
                if set(obj) != {"type", "seq", "leaf_hash", "canonical"}:
                    raise ValueError("event line has unexpected fields")
                stated = _hex32(obj.get("leaf_hash"), "leaf_hash")
                text = obj.get("canonical")
                if not isinstance(text, str):
                    raise ValueError("canonical is not a string")
                data = text.encode("utf-8")
            except (ValueError, UnicodeEncodeError) as exc:
                raise Damage("malformed", f"line {number}: {exc}", seq) from None
            if got != seq:
                raise Damage(
                    "event_missing" if got > seq else "event_order",
                    f"expected event {seq}, line {number} holds event {got}",
                    seq,
                )
            leaf = leaf_hash(data)
            if leaf != stated:
                raise Damage("leaf_hash_mismatch", "event bytes do not match their leaf hash", seq)
            _, problem = check_event_bytes(data)
            if problem:
                raise Damage("bytes_not_canonical", problem, seq)
            frontier.append(leaf)
            rep.events += 1
        elif kind == "checkpoint":
            try:
                if set(obj) != {"type", "note", "signature"}:
                    raise ValueError("checkpoint line has unexpected fields")
                cp = checkpoint_from_json(obj)
            except ValueError as exc:
                raise Damage("malformed", f"line {number}: {exc}", frontier.size) from None
            if chain.count == 0 and since == 0 and cp.index != 0:
                raise Damage("checkpoint_missing", f"checkpoints 0..{cp.index - 1} are missing", 0)
            chain.add(cp)
            if cp.tree_size != frontier.size:
                raise Damage(
                    "tail_missing" if cp.tree_size > frontier.size else "malformed",
                    f"checkpoint {cp.index} covers {cp.tree_size} events but line {number} "
                    f"follows event {frontier.size - 1}",
                    frontier.size,
                )
            if cp.root != frontier.root():
                raise Damage(
                    "root_mismatch",
                    f"checkpoint {cp.index} signs a root that events {covered}.."
                    f"{cp.tree_size - 1} do not produce (changed, inserted, removed or "
                    "reordered)",
                    covered,
                )
            covered = cp.tree_size
            rep.checkpoints += 1
            rep.last_checkpoint_time = cp.time
        else:
            raise Damage("malformed", f"line {number} is not an event or checkpoint line")
    if frontier.size > covered:
        raise Damage(
            "event_uncovered",
            f"events {covered}..{frontier.size - 1} are not covered by a signed checkpoint",
            covered,
        )
    if chain.count == 0:
        raise Damage("malformed", "the export holds no checkpoint")
    rep.root = frontier.root()
    rep.tree_size = frontier.size


# --------------------------------------------------------------------------- proofs


def verify_proof(doc: Any, keys: dict[str, Ed25519PublicKey]) -> Report:
    """Check an inclusion proof document (see docs/audit.md): the event bytes hash to
    the leaf, the path leads to the root, and a trusted key signed that root."""
    report = Report(ok=False)
    try:
        if not isinstance(doc, dict) or doc.get("format") != PROOF_FORMAT:
            raise Damage("malformed", f"not a {PROOF_FORMAT} document")
        try:
            seq = _int(doc.get("seq"), "seq")
            size = _int(doc.get("tree_size"), "tree_size")
            leaf = _hex32(doc.get("leaf_hash"), "leaf_hash")
            path_raw = doc.get("path")
            if not isinstance(path_raw, list) or len(path_raw) > 64:
                raise ValueError("path is not a list of at most 64 hashes")
            path = [_hex32(p, "path hash") for p in path_raw]
            text = doc.get("canonical")
            if not isinstance(text, str):
                raise ValueError("canonical is not a string")
            data = text.encode("utf-8")
            cp = checkpoint_from_json(doc.get("checkpoint"))
        except (ValueError, UnicodeEncodeError) as exc:
            raise Damage("malformed", str(exc)) from None
        if leaf_hash(data) != leaf:
            raise Damage("leaf_hash_mismatch", "event bytes do not match the leaf hash", seq)
        _, problem = check_event_bytes(data)
        if problem:
            raise Damage("bytes_not_canonical", problem, seq)
        sig = signature_problem(cp, keys)
        if sig:
            raise Damage(sig[0], sig[1], seq)
        if cp.tree_size != size:
            raise Damage("malformed", "proof and checkpoint name different tree sizes", seq)
        if not verify_inclusion(seq, size, leaf, path, cp.root):
            raise Damage("root_mismatch", "the path does not lead to the signed root", seq)
        report.ok = True
        report.events = 1
        report.checkpoints = 1
        report.root = cp.root
        report.tree_size = size
        report.last_checkpoint_time = cp.time
    except Damage as damage:
        report.damage = damage
    return report


# --------------------------------------------------------------------------- command line


def _read_keys(paths: list[str]) -> dict[str, Ed25519PublicKey]:
    keys: dict[str, Ed25519PublicKey] = {}
    for path in paths:
        with open(path, encoding="utf-8") as fh:
            keys.update(load_public_keys(fh.read()))
    return keys


def main(argv: list[str] | None = None) -> int:
    """Exit 0 when intact, 1 when damaged, 2 when the command itself is wrong."""
    import argparse

    parser = argparse.ArgumentParser(description="Verify a Keyledger audit export or proof.")
    parser.add_argument("what", choices=("export", "proof"))
    parser.add_argument("file")
    parser.add_argument("--public-key", action="append", required=True, metavar="PEM")
    args = parser.parse_args(argv)
    try:
        keys = _read_keys(args.public_key)
    except (OSError, ValueError) as exc:
        print(f"cannot read public key: {exc}", file=sys.stderr)
        return 2
    try:
        with open(args.file, "rb") as fh:
            if args.what == "export":
                report = verify_export(fh, keys)
            else:
                raw = fh.read(MAX_LINE + 1)
                try:
                    doc = strict_loads(raw.decode("utf-8", "strict"))
                except (UnicodeDecodeError, ValueError, RecursionError):
                    doc = None
                report = verify_proof(doc, keys)
    except OSError as exc:
        print(f"cannot read {args.file}: {exc}", file=sys.stderr)
        return 2
    if args.what == "proof" and report.ok:
        print(
            f"inclusion proof valid: event in a log of {report.tree_size} events, "
            f"root {report.root.hex()}, signed at {report.last_checkpoint_time}"
        )
    else:
        print(report.summary(), file=sys.stdout if report.ok else sys.stderr)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
