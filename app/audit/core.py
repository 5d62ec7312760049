"""The audit log's verifier core: everything the writer and every verifier share.

RFC 6962/9162 hashing, the frontier, inclusion and consistency proofs, the one
canonical event encoder and the event checks, C2SP signed notes, checkpoints and
cosignatures, the checkpoint chain, and the one fold over leaves and checkpoints.
It imports only the Python standard library and `cryptography`: the database
verifier, the writer and the offline command all drive it, and `flask audit
verifier` writes it, with the command line, into one file an auditor runs alone.
Every malformed input is answered with a `Damage` naming what is wrong; no input
may crash it (a verifier bug is a security bug).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import os
import re
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

EXPORT_FORMAT = "keyledger-audit-export/2"
EXPORT_FORMATS = ("keyledger-audit-export/1", EXPORT_FORMAT)
RECEIPT_FORMAT = "keyledger-audit-receipts/1"
PROOF_HEADER = "c2sp.org/tlog-proof@v1"
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
ZERO_HASH = bytes(HASH_SIZE)
SIG_ED25519 = 0x01
SIG_COSIGNATURE = 0x04
EM_DASH = "\u2014"
# ASCII digits only, and nothing after the Z (\d takes other scripts' digits, $ a newline).
TIME_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")
LEGACY_KEY_ID_RE = re.compile(r"^[0-9a-f]{16}$")
HEX64_RE = re.compile(r"^[0-9a-f]{64}$")
DECIMAL_RE = re.compile(r"^(0|[1-9][0-9]{0,18})$")
KEY_NAME_RE = re.compile(r"^[^\s+]+$")
EVENT_FIELDS = frozenset(
    ("v", "event_id", "time", "action", "sensitivity", "actor", "actor_ip", "target", "outcome")
) | {"details"}
SENSITIVITIES = ("low", "medium", "high", "critical")
OUTCOMES = ("success", "failure", "denied")
_SENSITIVITY_SET = frozenset(SENSITIVITIES)
_OUTCOME_SET = frozenset(OUTCOMES)
MAX_LINE = 1 << 20  # no legitimate export line comes near 1 MiB
MAX_SIGNATURES = 64
MAX_PROOF = 63


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
    f.extend_blob(b"".join(leaves))
    return f.root()


# Runs of 2**SUBTREE_MIN..2**SUBTREE_MAX leaves are hashed as whole subtrees by extend_blob.
SUBTREE_MIN, SUBTREE_MAX = 3, 12


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

    def append_subtree(self, level: int, h: bytes) -> None:
        """Append the hash of a perfect subtree of 2**level leaves; the size must be a
        multiple of 2**level (the subtree sits where the tree would build it)."""
        size = self.size
        if size & ((1 << level) - 1):
            raise ValueError("subtree is not aligned with the tree size")
        hashes = self.hashes
        s = size >> level
        while s & 1:
            h = hashlib.sha256(NODE_PREFIX + hashes.pop() + h).digest()
            s >>= 1
        hashes.append(h)
        self.size = size + (1 << level)

    def extend_blob(self, blob: bytes) -> None:
        """Append concatenated 32-byte leaf hashes (the verifiers' hot loop). Aligned
        runs are hashed a level at a time, then appended as one perfect subtree: the
        same tree, with a fraction of the interpreter work of leaf-by-leaf appends."""
        if self.on_node is not None:
            for i in range(0, len(blob), HASH_SIZE):
                self.append(blob[i : i + HASH_SIZE])
            return
        sha256 = hashlib.sha256
        n = len(blob) // HASH_SIZE
        pos = 0
        while pos < n:
            size = self.size
            # the largest run that starts aligned here and fits in what is left
            level = min((size & -size).bit_length() - 1 if size else SUBTREE_MAX, SUBTREE_MAX)
            level = min(level, (n - pos).bit_length() - 1)
            run = 1 << level
            if level < SUBTREE_MIN:
                self.append(blob[pos * HASH_SIZE : (pos + 1) * HASH_SIZE])
                pos += 1
                continue
            part = blob[pos * HASH_SIZE : (pos + run) * HASH_SIZE]
            nodes = [part[i : i + HASH_SIZE] for i in range(0, len(part), HASH_SIZE)]
            while len(nodes) > 1:
                it = iter(nodes)
                nodes = [sha256(NODE_PREFIX + a + b).digest() for a, b in zip(it, it, strict=True)]
            self.append_subtree(level, nodes[0])
            pos += run

    def root(self) -> bytes:
        if not self.hashes:
            return EMPTY_ROOT
        r = self.hashes[-1]
        for h in reversed(self.hashes[:-1]):
            r = hashlib.sha256(NODE_PREFIX + h + r).digest()
        return r


def _hashes(*values: bytes) -> bool:
    return all(isinstance(v, bytes) and len(v) == HASH_SIZE for v in values)


def verify_inclusion(index: int, size: int, leaf: bytes, path: list[bytes], root: bytes) -> bool:
    """RFC 9162 section 2.1.3.2, step for step (every hash must be 32 bytes)."""
    if not 0 <= index < size or not _hashes(leaf, root, *path):
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


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: list[bytes]
) -> bool:
    """RFC 9162 section 2.1.4.2, step for step. Like transparency-dev's reference, a
    proof from size 0 is refused (there is nothing to prove; callers special-case it)."""
    if old_size < 1 or old_size > new_size:
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if not proof or not _hashes(old_root, new_root, *proof):
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is the first node
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root


def inclusion_path(m: int, lo: int, hi: int, subtree: Callable[[int, int], bytes]) -> list[bytes]:
    """RFC 9162 PATH(m, D[lo:hi]), leaf-most first, from any subtree-hash source."""
    out: list[bytes] = []
    while hi - lo > 1:
        k = largest_power_of_two_below(hi - lo)
        if m < k:
            out.append(subtree(lo + k, hi))
            hi = lo + k
        else:
            out.append(subtree(lo, lo + k))
            lo, m = lo + k, m - k
    out.reverse()
    return out


def consistency_path(m: int, n: int, subtree: Callable[[int, int], bytes]) -> list[bytes]:
    """RFC 9162 PROOF(m, D[0:n]) (SUBPROOF with b = true), 0 < m <= n."""
    if not 0 < m <= n:
        raise ValueError("a consistency proof needs 0 < old size <= new size")
    out: list[bytes] = []
    lo, hi, complete = 0, n, True
    while True:
        size = hi - lo
        if m == size:
            if not complete:
                out.append(subtree(lo, hi))
            break
        k = largest_power_of_two_below(size)
        if m <= k:
            out.append(subtree(lo + k, hi))
            hi = lo + k
        else:
            out.append(subtree(lo, lo + k))
            lo, m, complete = lo + k, m - k, False
    out.reverse()
    return out


# --------------------------------------------------------------------------- canonical events


def _check_values(value: Any, path: str) -> None:
    if isinstance(value, bool | int | str) or value is None:
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{path}: keys must be strings")
            _check_values(v, f"{path}.{k}")
        return
    if isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check_values(v, f"{path}[{i}]")
        return
    raise TypeError(f"{path}: {type(value).__name__} is not allowed in an audit event")


def canonical_dumps(value: Any, *, checked: bool = True) -> bytes:
    """The one canonical encoder (RFC 8785-style for our value set): sorted keys, no
    spaces, raw UTF-8, integers only. `checked=False` skips the type walk for values
    strict_loads produced (it already refused floats)."""
    if checked:
        _check_values(value, "event")
    return _ENCODER.encode(value).encode("utf-8")


# Built once: json.dumps with keyword arguments makes a new encoder per call.
_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def format_time(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("audit times must be timezone-aware")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


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
    if not TIME_RE.fullmatch(body["time"]):
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
    try:
        again = canonical_dumps(body, checked=False)
    except UnicodeEncodeError:  # an escaped lone surrogate: no UTF-8 text holds it
        again = None
    if again != data:
        return None, "event bytes are not in canonical form"
    return body, None


def column_bytes(
    action: str,
    actor: str,
    ip: str | None,
    det: str,
    event_id: str,
    outcome: str,
    sens: str,
    target: str | None,
    when: str,
    enc: Callable[[str], str] = encode_basestring,
) -> bytes:
    """The canonical bytes the browsing columns imply (built with the C string
    encoder); equal to the stored bytes iff every column matches them. Every column
    but details is a JSON string literal or null, so each is pinned by its quotes;
    details is pinned by the one top-level `,"event_id":` that must follow it."""
    return (
        f'{{"action":{enc(action)},"actor":{enc(actor)},"actor_ip":'
        f'{"null" if ip is None else enc(ip)},"details":{det},"event_id":'
        f'{enc(event_id)},"outcome":{enc(outcome)},"sensitivity":{enc(sens)},'
        f'"target":{"null" if target is None else enc(target)},"time":"{when}","v":1}}'
    ).encode()


EVENT_ID_TEXT = ',"event_id":'
_COLUMNS = ("event_id", "action", "sensitivity", "actor", "actor_ip", "target", "outcome")


def event_leaf(
    row: tuple[Any, ...], expected_seq: int, when: str, sha256: Any = hashlib.sha256
) -> bytes:
    """All checks of one stored event: the row is (seq, leaf_hash, canonical,
    event_id, created_at, action, sensitivity, actor, actor_ip, target, outcome,
    details) with `when` the created_at text. Returns the leaf hash or raises Damage.
    A pruned row (canonical NULL) contributes its stored leaf hash unchecked."""
    seq, stored, data, event_id, _, action, sens, actor, ip, target, outcome, det = row
    if seq != expected_seq:
        if isinstance(seq, int) and seq > expected_seq:
            raise Damage(
                "event_missing",
                f"event {expected_seq} is missing (the next stored event is {seq})",
                expected_seq,
            )
        raise Damage("malformed", f"event {seq} appears twice", seq)
    if data is None:
        if not isinstance(stored, bytes | bytearray | memoryview) or len(stored) != HASH_SIZE:
            raise Damage("malformed", f"pruned event {seq} has no 32-byte leaf hash", seq)
        return bytes(stored)
    try:
        data = bytes(data)
        leaf = sha256(b"\x00" + data).digest()
        if leaf != bytes(stored):
            raise Damage("bytes_changed", "stored bytes do not match their leaf hash", seq)
        if (
            isinstance(det, str)
            and EVENT_ID_TEXT not in det
            and column_bytes(action, actor, ip, det, event_id, outcome, sens, target, when) == data
        ):
            return leaf
    except (TypeError, ValueError, AttributeError, UnicodeError):
        pass
    body, problem = check_event_bytes(data)
    if body is None:
        raise Damage("bytes_not_canonical", problem or "bad bytes", seq)
    columns = dict(zip(_COLUMNS, (event_id, action, sens, actor, ip, target, outcome), strict=True))
    for name in _COLUMNS:
        if columns[name] != body[name]:
            raise Damage("field_changed", f"column {name} differs from the hashed bytes", seq)
    if when != body["time"]:
        raise Damage("field_changed", "column created_at differs from the hashed bytes", seq)
    if not isinstance(det, str) or det.encode() != canonical_dumps(body["details"], checked=False):
        raise Damage("field_changed", "column details differs from the hashed bytes", seq)
    return leaf


# --------------------------------------------------------------------------- keys


def raw_public_key(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def legacy_key_id(key: Ed25519PublicKey) -> str:
    """The key id of format-1 checkpoints: SHA-256(raw key)[:8] as 16 hex digits."""
    return hashlib.sha256(raw_public_key(key)).digest()[:8].hex()


def note_key_id(name: str, key: Ed25519PublicKey, sig_type: int = SIG_ED25519) -> bytes:
    """C2SP signed-note: SHA-256(name || 0x0A || type || 32-byte public key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + raw_public_key(key)).digest()[
        :4
    ]


def vkey(name: str, key: Ed25519PublicKey, sig_type: int = SIG_ED25519) -> str:
    """C2SP verifier key: name+hex(key id)+base64(type || public key)."""
    material = base64.b64encode(bytes([sig_type]) + raw_public_key(key)).decode()
    return f"{name}+{note_key_id(name, key, sig_type).hex()}+{material}"


@dataclass(frozen=True)
class Verifier:
    """One trusted key under one name: a log key (type 0x01) or a witness's (0x04)."""

    name: str
    key: Ed25519PublicKey
    sig_type: int = SIG_ED25519

    @property
    def key_id(self) -> bytes:
        return note_key_id(self.name, self.key, self.sig_type)

    @property
    def vkey(self) -> str:
        return vkey(self.name, self.key, self.sig_type)


def parse_vkey(text: str) -> Verifier:
    parts = text.strip().split("+", 2)
    if len(parts) != 3:
        raise ValueError("a vkey is name+keyid+key")
    name, kid, material = parts
    if not name or not KEY_NAME_RE.match(name):
        raise ValueError("vkey name is empty or has spaces")
    try:
        raw = base64.b64decode(material, validate=True)
        want = bytes.fromhex(kid)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("vkey is not hex and base64") from exc
    if len(raw) != 33 or raw[0] not in (SIG_ED25519, SIG_COSIGNATURE):
        raise ValueError("only Ed25519 vkeys (type 0x01 or 0x04) are supported")
    verifier = Verifier(name, Ed25519PublicKey.from_public_bytes(raw[1:]), raw[0])
    if verifier.key_id != want:
        raise ValueError("vkey key id does not match its name and key")
    return verifier


def public_key_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


_PEM_RE = re.compile(
    r"-----BEGIN PUBLIC KEY-----\s+[A-Za-z0-9+/=\s]+?-----END PUBLIC KEY-----", re.DOTALL
)


def load_public_keys(pem_text: str) -> list[Ed25519PublicKey]:
    """Every Ed25519 public key in a PEM text (one or many blocks)."""
    keys: list[Ed25519PublicKey] = []
    for block in _PEM_RE.findall(pem_text):
        try:
            key = serialization.load_pem_public_key(block.encode())
        except (ValueError, TypeError) as exc:
            raise ValueError(f"not a valid public key: {exc}") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("only Ed25519 public keys are accepted")
        keys.append(key)
    if not keys:
        raise ValueError("no PEM public key found")
    return keys


def load_key_text(text: str) -> tuple[list[Ed25519PublicKey], list[Verifier]]:
    """PEM public keys and/or vkey lines (a key file may hold either; `#` comments)."""
    pems = load_public_keys(text) if "-----BEGIN" in text else []
    rest = _PEM_RE.sub("", text)
    vkeys = [
        parse_vkey(line)
        for line in rest.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not pems and not vkeys:
        raise ValueError("no PEM public key or vkey found")
    return pems, vkeys


class KeyRing:
    """The keys a verifier trusts: log keys by origin (their signed-note key id) and
    by the format-1 key id, and witness keys for cosignatures. Keys found inside an
    export or proof are never added: only what the auditor got some other way."""

    def __init__(self, origin: str | None = None) -> None:
        self.origin = origin
        self.log: dict[tuple[str, bytes], Ed25519PublicKey] = {}
        self.legacy: dict[str, Ed25519PublicKey] = {}
        self.witnesses: dict[tuple[str, bytes], Verifier] = {}
        self._raw: list[Ed25519PublicKey] = []

    def add_public_key(self, key: Ed25519PublicKey) -> None:
        """A bare key (PEM) signs as the log under whatever origin the log uses."""
        self.legacy[legacy_key_id(key)] = key
        self._raw.append(key)
        if self.origin:
            self.log[(self.origin, note_key_id(self.origin, key))] = key

    def add_verifier(self, v: Verifier) -> None:
        if v.sig_type == SIG_COSIGNATURE:
            self.witnesses[(v.name, v.key_id)] = v
        else:
            self.log[(v.name, v.key_id)] = v.key
            self.legacy[legacy_key_id(v.key)] = v.key

    def set_origin(self, origin: str) -> None:
        if self.origin == origin:
            return
        self.origin = origin
        for key in self._raw:
            self.log[(origin, note_key_id(origin, key))] = key

    def has_log_keys(self) -> bool:
        return bool(self.log or self.legacy)


# --------------------------------------------------------------------------- signed notes


@dataclass(frozen=True)
class Signature:
    name: str
    key_id: bytes
    data: bytes  # what follows the key id: an Ed25519 signature, or timestamp + signature

    def line(self) -> str:
        return f"{EM_DASH} {self.name} {base64.b64encode(self.key_id + self.data).decode()}\n"


def split_signed_note(text: str) -> tuple[bytes, list[Signature]]:
    """C2SP signed-note: the text, up to and including the newline before the last
    blank line, and its signature lines. Raises ValueError when malformed."""
    if len(text) > MAX_LINE:
        raise ValueError("signed note too long")
    if any(ord(c) < 0x20 and c != "\n" for c in text):
        raise ValueError("signed note holds a control character")
    if not text.endswith("\n"):
        raise ValueError("signed note does not end with a newline")
    cut = text.rfind("\n\n")
    if cut < 0:
        raise ValueError("signed note has no blank line before its signatures")
    body = text[: cut + 1]
    sigs: list[Signature] = []
    for line in text[cut + 2 : -1].split("\n"):
        prefix = EM_DASH + " "
        if not line.startswith(prefix):
            raise ValueError("signature line does not start with an em dash and a space")
        name, sep, b64 = line[len(prefix) :].partition(" ")
        if not sep or not name or not KEY_NAME_RE.match(name):
            raise ValueError("signature line has no valid key name")
        try:
            raw = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("signature is not base64") from exc
        if len(raw) < 5 or base64.b64encode(raw).decode() != b64:
            raise ValueError("signature is too short or not canonical base64")
        sigs.append(Signature(name, raw[:4], raw[4:]))
    if not sigs or len(sigs) > MAX_SIGNATURES:
        raise ValueError("signed note has no (or too many) signatures")
    try:
        return body.encode("utf-8"), sigs
    except UnicodeEncodeError as exc:
        raise ValueError("signed note is not valid Unicode") from exc


def sign_note(text: bytes, name: str, private: Ed25519PrivateKey) -> Signature:
    return Signature(name, note_key_id(name, private.public_key()), private.sign(text))


def cosignature_message(text: bytes, timestamp: int) -> bytes:
    """tlog-cosignature v1 (Ed25519): what a witness signs."""
    return b"cosignature/v1\ntime %d\n" % timestamp + text


def cosign(text: bytes, name: str, private: Ed25519PrivateKey, timestamp: int) -> Signature:
    kid = note_key_id(name, private.public_key(), SIG_COSIGNATURE)
    sig = private.sign(cosignature_message(text, timestamp))
    return Signature(name, kid, struct.pack(">Q", timestamp) + sig)


def cosignature_valid(text: bytes, sig: Signature, witness: Verifier) -> int | None:
    """The cosignature's timestamp when it verifies, else None."""
    if len(sig.data) != 72:
        return None
    (timestamp,) = struct.unpack(">Q", sig.data[:8])
    if timestamp >= 1 << 63:
        return None
    try:
        witness.key.verify(sig.data[8:], cosignature_message(text, timestamp))
    except InvalidSignature:
        return None
    return timestamp


# --------------------------------------------------------------------------- checkpoints


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


def _decimal(text: str, what: str) -> int:
    if not DECIMAL_RE.match(text):
        raise ValueError(f"{what} is not a plain decimal number")
    return int(text)


def _parse_note(note: bytes) -> tuple[str, int, bytes, int, str, str | None, bytes]:
    """Strictly parse a checkpoint note (either form); anything else is refused."""
    try:
        text = note.decode("utf-8", "strict")
    except UnicodeDecodeError as exc:
        raise ValueError("checkpoint note is not UTF-8") from exc
    if not text.endswith("\n"):
        raise ValueError("checkpoint note must end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) not in (6, 7):
        raise ValueError(f"checkpoint note has {len(lines)} lines, expected 6")
    legacy = len(lines) == 7
    origin, size_s, root_s, *rest = lines
    if not origin or not KEY_NAME_RE.match(origin) or not origin.isprintable():
        raise ValueError("checkpoint origin is empty, not printable or has spaces")
    tree_size = _decimal(size_s, "tree size")
    try:
        root = base64.b64decode(root_s, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("root hash is not base64") from exc
    if len(root) != HASH_SIZE or base64.b64encode(root).decode() != root_s:
        raise ValueError("root hash is not 32 bytes in canonical base64")
    names = ("index", "time", "key", "prev") if legacy else ("index", "time", "prev")
    fields: dict[str, str] = {}
    for line, name in zip(rest, names, strict=True):
        label, sep, value = line.partition(" ")
        if label != name or not sep:
            raise ValueError(f"checkpoint line {name!r} missing or out of order")
        fields[name] = value
    index = _decimal(fields["index"], "checkpoint index")
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
    warnings: list[str] = field(default_factory=list)
    pruned: int = 0
    workers: int = 0  # processes that checked event lines besides this one

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


@dataclass(frozen=True)
class Trusted:
    """A checkpoint the auditor kept: the log must still extend it."""

    tree_size: int
    root: bytes
    index: int | None = None


class Fold:
    """The one fold over leaves and checkpoints, in log order, that every verifier
    (database, export) drives: leaves extend the frontier; each checkpoint must
    follow the chain, name the current size and sign the current root; a trusted
    checkpoint must be met on the way (or proven by a consistency proof). Memory:
    one frontier, the last checkpoint."""

    def __init__(
        self,
        keys: KeyRing,
        *,
        origin: str | None = None,
        frontier: Frontier | None = None,
        trusted: Trusted | None = None,
    ) -> None:
        self.chain = CheckpointChain(keys, origin)
        self.frontier = frontier or Frontier()
        self.start = self.frontier.size
        self.covered = self.frontier.size
        self.trusted = trusted
        self.trusted_met = trusted is None or (
            trusted.tree_size == 0 and trusted.root == EMPTY_ROOT
        )
        self.report_checkpoints = 0
        self.last_time: str | None = None

    @property
    def size(self) -> int:
        return self.frontier.size

    def leaf(self, h: bytes) -> None:
        self.frontier.append(h)

    def leaves(self, blob: bytes) -> None:
        self.frontier.extend_blob(blob)

    def at_size(self) -> None:
        """Called when the frontier reaches the trusted checkpoint's size."""
        t = self.trusted
        if t is not None and not self.trusted_met and t.tree_size == self.frontier.size:
            if self.frontier.root() != t.root:
                raise Damage(
                    "fork",
                    f"the log's root at size {t.tree_size} differs from the trusted checkpoint's:"
                    " this log does not extend it",
                    t.tree_size,
                )
            self.trusted_met = True

    def checkpoint(self, cp: Checkpoint) -> None:
        self.chain.add(cp)
        size = self.frontier.size
        if cp.tree_size != size:
            if cp.tree_size > size:
                raise Damage(
                    "tail_missing",
                    f"checkpoint {cp.index} covers {cp.tree_size} events but the log ends "
                    f"after {size}: events {size}..{cp.tree_size - 1} are missing",
                    size,
                )
            raise Damage(
                "checkpoint_inconsistent",
                f"checkpoint {cp.index} is out of order (covers {cp.tree_size} events, "
                f"{size} read)",
                cp.tree_size,
            )
        if cp.root != self.frontier.root():
            raise Damage(
                "root_mismatch",
                f"checkpoint {cp.index} signs a root that events {self.covered}.."
                f"{cp.tree_size - 1} do not produce: one of them was changed, inserted, "
                "removed or reordered",
                self.covered,
            )
        self.covered = size
        self.report_checkpoints += 1
        self.last_time = cp.time

    def consistency(self, old_size: int, proof: list[bytes], cp: Checkpoint) -> None:
        """A consistency proof from the trusted checkpoint to checkpoint `cp` (for an
        export starting after it)."""
        t = self.trusted
        if t is None or self.trusted_met or old_size != t.tree_size:
            return
        if not verify_consistency(t.tree_size, cp.tree_size, t.root, cp.root, proof):
            raise Damage(
                "fork",
                f"the consistency proof from size {t.tree_size} to checkpoint {cp.index} "
                "fails: this log does not extend the trusted checkpoint",
                t.tree_size,
            )
        self.trusted_met = True

    def finish(self, rep: Report, *, need_checkpoint: bool = True) -> None:
        size = self.frontier.size
        if size > self.covered:
            raise Damage(
                "event_uncovered",
                f"events {self.covered}..{size - 1} are not covered by any signed checkpoint"
                " (inserted after sealing?)",
                self.covered,
            )
        if need_checkpoint and self.chain.count == 0:
            raise Damage("malformed", "no checkpoint")
        t = self.trusted
        if t is not None and not self.trusted_met:
            if t.tree_size > size:
                raise Damage(
                    "tail_missing",
                    f"the trusted checkpoint covers {t.tree_size} events but this log ends "
                    f"after {size}: it was truncated or rolled back",
                    size,
                )
            raise Damage(
                "fork",
                f"nothing shows that this log extends the trusted checkpoint of "
                f"{t.tree_size} events (no consistency proof from it)",
                t.tree_size,
            )
        rep.checkpoints = self.report_checkpoints
        rep.last_checkpoint_time = self.last_time
        rep.root = self.frontier.root()
        rep.tree_size = size


def fold_blobs(
    fold: Fold,
    blobs: Iterable[bytes],
    checkpoints: Iterator[Checkpoint],
    progress: Callable[[int], None] | None = None,
) -> Checkpoint | None:
    """Drive the fold with leaf hashes (concatenated, in seq order) and checkpoints
    (in index order): each checkpoint is checked when the tree reaches its size.
    Returns the first checkpoint beyond the leaves (a tail went missing) or None."""
    cp = next(checkpoints, None)
    trusted_size = fold.trusted.tree_size if fold.trusted and not fold.trusted_met else -1

    def reach() -> None:
        nonlocal cp
        size = fold.size
        if size == trusted_size:
            fold.at_size()
        while cp is not None and cp.tree_size <= size:
            fold.checkpoint(cp)
            cp = next(checkpoints, None)

    reach()
    for blob in blobs:
        pos = 0
        while pos < len(blob):
            # stop at the next size something must be checked at
            targets = [t for t in (cp.tree_size if cp else -1, trusted_size) if t > fold.size]
            stop = min(targets) if targets else -1
            take = len(blob) - pos if stop < 0 else min(len(blob) - pos, (stop - fold.size) * 32)
            fold.leaves(blob[pos : pos + take])
            pos += take
            reach()
        if progress is not None:
            progress(fold.size)
    return cp


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
        yield number, _strict_line(number, raw)


def verify_export(
    stream: Iterable[bytes],
    keys: KeyRing,
    *,
    trusted: Trusted | None = None,
    min_witnesses: int = 0,
    clock: Callable[[], float] | None = None,
) -> Report:
    """Verify an export (JSON lines, see docs/audit.md) against trusted keys; with
    `trusted`, the export must extend that checkpoint; with `min_witnesses`, its
    newest checkpoint must carry that many valid cosignatures from trusted witnesses."""
    import time

    clock = clock or time.perf_counter
    started = clock()
    report = Report(ok=False)
    try:
        _verify_export(stream, keys, report, trusted, min_witnesses)
        report.ok = True
    except Damage as damage:
        report.damage = damage
    report.seconds = clock() - started
    return report


# Below this many bytes one process is done before workers would pay off.
PARALLEL_MIN_BYTES = 16 << 20
SPAN = 4 << 20  # bytes of whole lines per worker task


def export_workers(size: int) -> int:
    """Worker processes for an export file of `size` bytes: one per core the
    process may use for a big file, none for a small one or on one core."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return cores if cores >= 2 and size >= PARALLEL_MIN_BYTES else 0


def verify_export_file(
    path: str,
    keys: KeyRing,
    *,
    trusted: Trusted | None = None,
    min_witnesses: int = 0,
    workers: int | None = None,
    span: int = SPAN,
) -> Report:
    """verify_export on a file, its lines' per-line work (_scan) done by `workers`
    processes on byte ranges of whole lines (None: export_workers; 0: none). This
    process feeds their results to the one fold in file order, exactly as it feeds
    its own, so the report (the first damage, named) is the same either way."""
    import time

    started = time.perf_counter()
    if not os.path.isfile(path):  # a pipe, say: only read in order
        workers = 0
    elif workers is None:
        workers = export_workers(os.path.getsize(path))
    note = None
    if workers > 0:
        report = Report(ok=False, workers=workers)
        try:
            _verify_export_parallel(path, keys, report, trusted, min_witnesses, workers, span)
            report.ok = True
            report.notes.append(f"checked by {workers} worker process{'es' * (workers > 1)}")
        except Damage as damage:
            report.damage = damage
        except Exception as exc:  # e.g. no way to start processes here: check in this one
            note = f"worker processes failed ({type(exc).__name__}): checked in one process"
        if note is None:
            report.seconds = time.perf_counter() - started
            return report
    with open(path, "rb") as fh:
        report = verify_export(fh, keys, trusted=trusted, min_witnesses=min_witnesses)
    if note is not None and report.ok:
        report.notes.append(note)
    report.seconds = time.perf_counter() - started
    return report


def _spans(fh: Any, start: int, end: int, size: int) -> Iterator[tuple[int, int]]:
    """Byte ranges [lo, hi) from `start` to `end`, each about `size` bytes of whole
    lines (a range ends after the newline that ends the line it cuts)."""
    lo = start
    while lo < end:
        hi = lo + max(1, size)
        if hi < end:
            fh.seek(hi - 1)
            fh.readline()
            hi = fh.tell()
        hi = min(hi, end)
        yield lo, hi
        lo = hi


def _scan_span(path: str, lo: int, hi: int) -> tuple[list[_Item], int]:
    """In a worker: _scan over the lines in [lo, hi), numbered from 0, and how many
    lines that is. An over-long line is cut to MAX_LINE + 1 bytes (all the strict
    path reads of it) so it crosses to the main process cheaply."""
    with open(path, "rb") as fh:
        fh.seek(lo)
        data = fh.read(hi - lo)
    items = [
        item
        if item[2] is not None or len(item[1]) <= MAX_LINE
        else (item[0], item[1][: MAX_LINE + 1], None, b"", 0)
        for item in _scan(io.BytesIO(data), 0)  # split into lines as a file is
    ]
    return items, data.count(b"\n") + (not data.endswith(b"\n"))


def _verify_export_parallel(
    path: str,
    keys: KeyRing,
    rep: Report,
    trusted: Trusted | None,
    min_witnesses: int,
    workers: int,
    span: int,
) -> None:
    import multiprocessing
    import threading
    from collections import deque

    # fork starts a worker in milliseconds and needs nothing importable, but is
    # safe only while this process runs no other thread.
    fork = "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1
    ctx = multiprocessing.get_context("fork" if fork else "spawn")
    with open(path, "rb") as fh:
        check = _ExportFold(fh.readline() or None, keys, rep, trusted)
        spans = _spans(fh, fh.tell(), os.fstat(fh.fileno()).st_size, span)
        number = 2  # the first line of the next range
        with ctx.Pool(workers) as pool:
            pending: deque[Any] = deque()
            for lo, hi in spans:  # at most two ranges per worker in flight: flat memory
                pending.append(pool.apply_async(_scan_span, (path, lo, hi)))
                if len(pending) >= 2 * workers:
                    break
            while pending:
                items, count = pending.popleft().get()
                nxt = next(spans, None)
                if nxt is not None:
                    pending.append(pool.apply_async(_scan_span, (path, *nxt)))
                check.feed(items, number)
                number += count
    check.finish(min_witnesses)


_EVENT_KEYS = frozenset(("type", "seq", "leaf_hash", "canonical"))
_LEAF_KEYS = frozenset(("type", "seq", "leaf_hash"))
# The exact layout the exporter writes for an event line, read with the C string
# scanner (the second fast path, for what the first does not take).
_EVENT_HEAD = '{"canonical": "'
_EVENT_TAIL = re.compile(
    r'", "leaf_hash": "([0-9a-f]{64})", "seq": (0|[1-9][0-9]{0,18}), "type": "event"}'
)
_scanstring = json.decoder.scanstring  # type: ignore[attr-defined]


_ESC = r"\\(?:[\"\\bfnrt]|u00(?:0[0-7]|0b|0e|0f|1[0-9a-f]))"
_PLAIN = r'[^"\\\x00-\x1f]'
_STR = '"' + _PLAIN + "*+(?:" + _ESC + _PLAIN + '*+)*+"'  # unrolled: runs of plain chars
_STR1 = '"(?=[^"])' + _PLAIN + "*+(?:" + _ESC + _PLAIN + '*+)*+"'
# A version-1 event in canonical form, but for details (checked on its own): keys
# sorted, no spaces, strings escaped exactly as the one encoder escapes them.
_CANONICAL_EVENT = re.compile(
    '{"action":' + _STR1 + ',"actor":' + _STR1 + ',"actor_ip":(?:' + _STR + "|null)"
    ',"details":(\\{.*?\\}),"event_id":' + _STR1 + ',"outcome":"(?:success|failure|denied)"'
    ',"sensitivity":"(?:low|medium|high|critical)","target":(?:' + _STR + "|null)"
    ',"time":"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{6}Z","v":1}',
    re.DOTALL,
)
# Plain JSON but floats and NaN refused (the C scanner calls these only for them).
_NO_FLOATS = json.JSONDecoder(parse_float=_no_constants, parse_constant=_no_constants)


def canonical_event_text(text: str) -> bool:
    """True when `text` is a version-1 event in canonical form (the fast check; a
    False here goes to check_event_bytes, which names the problem)."""
    m = _CANONICAL_EVENT.fullmatch(text)
    if m is None:
        return False
    details = m[1]
    if details == "{}":
        return True
    try:
        value = _NO_FLOATS.decode(details)
    except (ValueError, RecursionError):
        return False
    return type(value) is dict and _ENCODER.encode(value) == details


def _fast_event_line(line: str) -> tuple[str, bytes, int] | None:
    """(canonical text, stated leaf hash, seq) of an event line in the exporter's
    exact layout, or None (then the strict parser decides)."""
    try:
        text, end = _scanstring(line, len(_EVENT_HEAD), True)
    except (ValueError, IndexError):
        return None
    m = _EVENT_TAIL.fullmatch(line, end - 1)
    if m is None:
        return None
    return text, bytes.fromhex(m[1]), int(m[2])


# The first fast path: one regex over the raw bytes of an event line whose canonical
# event has no backslash in it and flat details (at most _DETAIL_KEYS members whose
# keys have no escapes, values strings, integers, true, false, null or flat lists of
# these). Why accepting a line here is sound, i.e. the strict path (_ExportFold.line:
# _strict_line, then check_event_bytes) accepts it too, with the same leaf:
# - The outer line is the exporter's layout with one JSON string whose only escape
#   is \" (_Q; every other byte is _B_PLAIN: no quote, backslash or control byte),
#   so it is strict JSON once it is UTF-8 (raw.isascii() or _utf8), with exactly
#   the four fields, and the string's value is the bytes with each backslash
#   dropped: the bytes hashed here are the bytes the strict path hashes.
# - Inside, the event's fields are in sorted order without spaces, each string
#   consists of bytes no JSON encoder escapes, integers have no leading zero, no
#   "-0" and at most 18 digits, and there are no floats: canonical_dumps of the
#   decoded event gives these bytes back, and event_problem holds (exact field set,
#   v 1, non-empty action, actor, event_id, the time pattern, known enumerations).
# - Details keys have no escapes, so their bytes are their UTF-8 text, whose byte
#   order is code point order, the order sort_keys uses: strictly ascending keys
#   are the encoder's order and have no duplicates (which strict_loads refuses).
# Anything else (escapes, nested details, more members, leading spaces...) goes to
# the second fast path and then to the strict path, which accepts it or names why.
_DETAIL_KEYS = 6
_Q = rb'\\"'
_B_PLAIN = rb'[^"\\\x00-\x1f]'
_B_STR = _Q + _B_PLAIN + rb"*+" + _Q
_B_STR1 = _Q + _B_PLAIN + rb"++" + _Q
_B_SCALAR = rb"(?:" + _B_STR + rb"|0|-?[1-9][0-9]{0,17}|true|false|null)"
_B_VALUE = rb"(?:" + _B_SCALAR + rb"|\[(?:" + _B_SCALAR + rb"(?:," + _B_SCALAR + rb")*+)?\])"
_B_MEMBER = _Q + rb"(" + _B_PLAIN + rb"*+)" + _Q + b":" + _B_VALUE  # the key captured
_B_MEMBERS = b""
for _i in range(_DETAIL_KEYS):  # (?:"k1":v(?:,"k2":v(?:,...)?)?)?
    _B_MEMBERS = b"(?:" + b"," * (_i < _DETAIL_KEYS - 1) + _B_MEMBER + _B_MEMBERS + b")?"


def _b_key(name: bytes) -> bytes:
    return _Q + name + _Q + b":"


_EXPORT_EVENT = re.compile(
    rb'\{"canonical": "(\{'
    + _b_key(b"action") + _B_STR1
    + b"," + _b_key(b"actor") + _B_STR1
    + b"," + _b_key(b"actor_ip") + rb"(?:" + _B_STR + rb"|null)"
    + b"," + _b_key(b"details") + rb"\{" + _B_MEMBERS + rb"\}"
    + b"," + _b_key(b"event_id") + _B_STR1
    + b"," + _b_key(b"outcome") + _Q + rb"(?:success|failure|denied)" + _Q
    + b"," + _b_key(b"sensitivity") + _Q + rb"(?:low|medium|high|critical)" + _Q
    + b"," + _b_key(b"target") + rb"(?:" + _B_STR + rb"|null)"
    + b"," + _b_key(b"time") + _Q
    + rb"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z" + _Q
    + b"," + _b_key(b"v") + rb"1\})"
    rb'", "leaf_hash": "([0-9a-f]{64})", "seq": (0|[1-9][0-9]{0,18}), "type": "event"\}\n?'
)  # fmt: skip
# A pruned event's line, in the exporter's layout: strict JSON with the leaf fields.
_EXPORT_LEAF = re.compile(
    rb'\{"leaf_hash": "([0-9a-f]{64})", "seq": (0|[1-9][0-9]{0,18}), "type": "leaf"\}\n?'
)
_RUN = 4096  # leaf hashes per run handed to the fold: memory stays flat


def _utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8", "strict")
    except UnicodeDecodeError:
        return False
    return True


def _ascending(*keys: bytes | None) -> bool:
    """Strictly ascending up to the first None (the details had fewer members)."""
    prev = keys[0]
    for key in keys[1:]:
        if key is None:
            return True
        if not prev < key:  # type: ignore[operator]
            return False
        prev = key
    return True


def _second_fast(raw: bytes) -> tuple[int, bytes, int] | None:
    """(seq, leaf hash, 1 if pruned) for an event line with escapes or nested details
    in the exporter's layout that is canonical, or a pruned event's line; else None."""
    if len(raw) > MAX_LINE:
        return None
    if raw.startswith(b'{"canonical": "'):
        try:
            fast = _fast_event_line(raw.decode("utf-8", "strict").removesuffix("\n"))
            if fast is None:
                return None
            text, stated, got = fast
            data = text.encode("utf-8")
        except (UnicodeDecodeError, UnicodeEncodeError):
            return None
        leaf = hashlib.sha256(b"\x00" + data).digest()
        if leaf != stated or not canonical_event_text(text):
            return None
        return got, leaf, 0
    m = _EXPORT_LEAF.fullmatch(raw)
    if m is None:
        return None
    return int(m[2]), bytes.fromhex(m[1].decode()), 1


# One item per run of lines the fast paths accept, or per other line:
# (line number, raw line, first seq of the run or None, leaf hashes, pruned count).
# For a run, the raw line is its first: if the run does not start where the tree
# is, that line goes through the strict path, which names the damage.
_Item = tuple[int, bytes, int | None, bytes, int]


def _scan(lines: Iterable[bytes], first_line: int) -> Iterator[_Item]:
    """The per-line work of an export check, with no state but the lines (so worker
    processes can do it on byte ranges): runs of event lines with consecutive seqs,
    each one's leaf hash matching its bytes and those bytes canonical, and every
    other line as it is. `first_line` is the first line's number."""
    sha256 = hashlib.sha256
    hexlify = binascii.hexlify
    event = _EXPORT_EVENT.fullmatch
    leaves: list[bytes] = []
    add = leaves.append
    first = b""
    first_number = start = pruned = 0
    expected = -1  # the seq that continues the current run (-1: none open)
    for number, raw in enumerate(lines, first_line):
        leaf = None
        m = event(raw) if len(raw) <= MAX_LINE else None
        if m is not None:
            seg, k1, k2, k3, k4, k5, k6, stated, got = m.groups()
            if (k2 is None or (k1 < k2 and (k3 is None or _ascending(k2, k3, k4, k5, k6)))) and (
                raw.isascii() or _utf8(raw)
            ):
                leaf = sha256(b"\x00" + seg.translate(None, b"\\")).digest()
                if hexlify(leaf) == stated:
                    seq, p = int(got), 0
                else:
                    leaf = None
        if leaf is None:
            found = _second_fast(raw)
            if found is None:
                if leaves:
                    yield first_number, first, start, b"".join(leaves), pruned
                    leaves.clear()
                expected = -1
                yield number, raw, None, b"", 0
                continue
            seq, leaf, p = found
        if seq != expected or len(leaves) >= _RUN:
            if leaves:
                yield first_number, first, start, b"".join(leaves), pruned
                leaves.clear()
            first, first_number, start, pruned = raw, number, seq, 0
        add(leaf)
        expected = seq + 1
        pruned += p
    if leaves:
        yield first_number, first, start, b"".join(leaves), pruned


class _ExportFold:
    """An export's lines in order into the one Fold: the header, runs of checked
    leaf hashes, and through the strict path every other line (checkpoints,
    consistency proofs, and anything the fast paths did not take)."""

    def __init__(
        self, first: bytes | None, keys: KeyRing, rep: Report, trusted: Trusted | None
    ) -> None:
        if first is None:
            raise Damage("malformed", "the export is empty")
        header = _strict_line(1, first)
        if not isinstance(header, dict) or header.get("type") != "header":
            raise Damage("malformed", "line 1 is not the export header")
        try:
            if header.get("format") not in EXPORT_FORMATS:
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
        keys.set_origin(origin)
        self.keys, self.rep, self.since = keys, rep, since
        self.fold = Fold(keys, origin=origin, frontier=frontier, trusted=trusted)
        self.fold.at_size()  # a trusted checkpoint before `since` needs a consistency line
        self.trusted_size = trusted.tree_size if trusted is not None else -1
        self.last_cp: Checkpoint | None = None
        self.pending_consistency: tuple[int, list[bytes]] | None = None

    def feed(self, items: Iterable[_Item], base: int = 0) -> None:
        """Items from _scan, their line numbers counted from `base`."""
        for number, raw, start, blob, pruned in items:
            if start is None:
                self.line(number + base, raw)
            else:
                self.run(number + base, raw, start, blob, pruned)

    def run(self, number: int, first: bytes, start: int, blob: bytes, pruned: int) -> None:
        fold = self.fold
        size = fold.size
        if start != size:
            self.line(number, first)  # holds the wrong seq: the strict path names it
            raise Damage("malformed", f"line {number}: event out of order", size)
        n = len(blob) // HASH_SIZE
        if size < self.trusted_size <= size + n:
            cut = (self.trusted_size - size) * HASH_SIZE
            fold.leaves(blob[:cut])
            fold.at_size()
            blob = blob[cut:]
        fold.leaves(blob)
        self.rep.events += n
        self.rep.pruned += pruned

    def line(self, number: int, raw: bytes) -> None:
        """One line through the strict parser (the path that names every problem)."""
        fold, rep = self.fold, self.rep
        frontier = fold.frontier
        obj = _strict_line(number, raw)
        kind = obj.get("type") if isinstance(obj, dict) else None
        if kind == "event" or kind == "leaf":
            seq = frontier.size
            try:
                got = _int(obj.get("seq"), "seq")
                if obj.keys() != (_EVENT_KEYS if kind == "event" else _LEAF_KEYS):
                    raise ValueError("event line has unexpected fields")
                stated = _hex32(obj.get("leaf_hash"), "leaf_hash")
                if kind == "event":
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
            if kind == "event":
                leaf = hashlib.sha256(b"\x00" + data).digest()
                if leaf != stated:
                    raise Damage(
                        "leaf_hash_mismatch", "event bytes do not match their leaf hash", seq
                    )
                if not canonical_event_text(text):
                    _, problem = check_event_bytes(data)
                    if problem:
                        raise Damage("bytes_not_canonical", problem, seq)
                fold.leaf(leaf)
            else:
                fold.leaf(stated)
                rep.pruned += 1
            rep.events += 1
            fold.at_size()
        elif kind == "checkpoint":
            try:
                if obj.keys() not in ({"type", "signed_note"}, {"type", "note", "signature"}):
                    raise ValueError("checkpoint line has unexpected fields")
                cp = checkpoint_from_json({k: v for k, v in obj.items() if k != "type"})
                if not cp.legacy:
                    cp = parse_signed_checkpoint(obj["signed_note"], self.keys)
            except ValueError as exc:
                raise Damage("malformed", f"line {number}: {exc}", frontier.size) from None
            if fold.chain.count == 0 and self.since == 0 and cp.index != 0:
                raise Damage("checkpoint_missing", f"checkpoints 0..{cp.index - 1} are missing", 0)
            fold.checkpoint(cp)
            if self.pending_consistency is not None:
                fold.consistency(self.pending_consistency[0], self.pending_consistency[1], cp)
                self.pending_consistency = None
            self.last_cp = cp
        elif kind == "consistency":
            try:
                if obj.keys() != {"type", "old_size", "proof"}:
                    raise ValueError("consistency line has unexpected fields")
                old = _int(obj.get("old_size"), "old_size")
                hashes = obj.get("proof")
                if not isinstance(hashes, list) or len(hashes) > MAX_PROOF:
                    raise ValueError("proof is not a list of at most 63 hashes")
                proof = [_hex32(h, "proof hash") for h in hashes]
            except ValueError as exc:
                raise Damage("malformed", f"line {number}: {exc}") from None
            self.pending_consistency = (old, proof)
        else:
            raise Damage("malformed", f"line {number} is not an event or checkpoint line")

    def finish(self, min_witnesses: int) -> None:
        rep = self.rep
        self.fold.finish(rep)
        if min_witnesses:
            last_cp = self.last_cp
            assert last_cp is not None
            names = valid_cosigners(last_cp, self.keys)
            if len(names) < min_witnesses:
                raise Damage(
                    "witnesses_missing",
                    f"the newest checkpoint ({last_cp.index}) carries {len(names)} valid "
                    f"witness cosignatures, {min_witnesses} required",
                    last_cp.tree_size,
                )
            rep.notes.append(f"newest checkpoint cosigned by {', '.join(names)}")


def _strict_line(number: int, raw: bytes) -> Any:
    if len(raw) > MAX_LINE:
        raise Damage("malformed", f"line {number} is longer than {MAX_LINE} bytes")
    line = raw.rstrip(b"\n")
    if line.endswith(b"\r"):
        raise Damage("malformed", f"line {number} ends with CR")
    if not line:
        raise Damage("malformed", f"line {number} is empty")
    try:
        return strict_loads(line.decode("utf-8", "strict"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise Damage("malformed", f"line {number} is not strict UTF-8 JSON ({exc})") from None


def _verify_export(
    stream: Iterable[bytes],
    keys: KeyRing,
    rep: Report,
    trusted: Trusted | None,
    min_witnesses: int,
) -> None:
    lines = iter(stream)
    check = _ExportFold(next(lines, None), keys, rep, trusted)
    check.feed(_scan(lines, 2))
    check.finish(min_witnesses)


# --------------------------------------------------------------------------- proofs


def _b64_hash(line: str, what: str) -> bytes:
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
    index = _decimal(lines[pos][6:], "index")
    path = [_b64_hash(line, "proof hash") for line in lines[pos + 1 :]]
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
    old = _decimal(lines[0][4:], "old size")
    proof = [_b64_hash(line, "proof hash") for line in lines[1:]]
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
                raise Damage("malformed", f"receipt {i} carries no event bytes")
            check_inclusion(proof, keys, None, min_witnesses)
            body = json.loads(proof.extra)
            if body.get("target") != target:
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
