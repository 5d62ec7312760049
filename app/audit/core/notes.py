"""Ed25519 keys, verifier keys (vkeys), the key ring and C2SP signed notes and
cosignatures."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

SIG_ED25519 = 0x01
SIG_COSIGNATURE = 0x04
EM_DASH = "\u2014"
LEGACY_KEY_ID_RE = re.compile(r"^[0-9a-f]{16}\Z")
HEX64_RE = re.compile(r"^[0-9a-f]{64}\Z")
KEY_NAME_RE = re.compile(r"^[^\s+]+\Z")
MAX_LINE = 1 << 20  # no legitimate export line comes near 1 MiB
MAX_SIGNATURES = 64


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
