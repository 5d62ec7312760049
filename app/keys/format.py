"""The key format: `<prefix>.<id>.<secret><checksum>`.

- id: 12 base62 characters (~71 bits), public, indexed; names the key in pages and logs.
- secret: 192 bits from `secrets`, base62, fixed width 33.
- checksum: CRC32 of everything before it, base62, fixed width 6 (the GitHub token
  scheme): a typo or a scanner hit is rejected without a database query. CRC32 catches
  every burst of up to 32 bits, hence every single-character change.
"""

from __future__ import annotations

import re
import secrets
import zlib
from dataclasses import dataclass

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_INDEX = {c: i for i, c in enumerate(ALPHABET)}
ID_LEN = 12
SECRET_BITS = 192
SECRET_LEN = 33  # ceil(192 / log2(62))
CHECKSUM_LEN = 6  # 62**6 > 2**32
PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{1,15}\Z")
MAX_KEY_LEN = 16 + 1 + ID_LEN + 1 + SECRET_LEN + CHECKSUM_LEN
_KEY_RE = re.compile(
    rf"^([a-z][a-z0-9]{{1,15}})\.([0-9A-Za-z]{{{ID_LEN}}})\.([0-9A-Za-z]{{{SECRET_LEN}}})"
    rf"([0-9A-Za-z]{{{CHECKSUM_LEN}}})$"
)


_PUBLIC_ID_RE = re.compile(rf"^[0-9A-Za-z]{{{ID_LEN}}}$")


def scan_pattern(prefix: str) -> str:
    """The regular expression a secret scanner (GitHub's partner programme, gitleaks)
    finds our keys with. RE2 syntax (no lookaround), so both accept it; docs/operations.md
    shows it and a test checks the two agree. The checksum cannot be checked by a regular
    expression: the scanner's matches are checked by the endpoints it reports to."""
    tail = SECRET_LEN + CHECKSUM_LEN
    return rf"\b{re.escape(prefix)}\.[0-9A-Za-z]{{{ID_LEN}}}\.[0-9A-Za-z]{{{tail}}}\b"


def is_public_id(value: object) -> bool:
    """Could this be a key's public id? Lets callers answer 404 without a query."""
    return isinstance(value, str) and _PUBLIC_ID_RE.match(value) is not None


class MalformedKey(ValueError):
    """Not a key of ours: wrong shape, prefix, length, type or checksum."""


@dataclass(frozen=True, slots=True)
class ParsedKey:
    prefix: str
    public_id: str
    secret: str


def b62encode(value: int, width: int) -> str:
    # Operators, not divmod and a list: every validation encodes its checksum.
    text = ""
    for _ in range(width):
        text = ALPHABET[value % 62] + text
        value //= 62
    if value:
        raise ValueError("value does not fit the width")
    return text


def b62decode(text: str) -> int:
    value = 0
    for ch in text:
        value = value * 62 + _INDEX[ch]
    return value


def checksum(body: str) -> str:
    return b62encode(zlib.crc32(body.encode("ascii")), CHECKSUM_LEN)


def new_public_id() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(ID_LEN))


def new_secret() -> str:
    return b62encode(secrets.randbits(SECRET_BITS), SECRET_LEN)


def assemble(prefix: str, public_id: str, secret: str) -> str:
    body = f"{prefix}.{public_id}.{secret}"
    return body + checksum(body)


def parse(raw: object, expected_prefix: str, test_prefix: str = "") -> ParsedKey:
    """Check shape and checksum only; raises MalformedKey. Touches no database.
    `test_prefix`: test keys' prefix, accepted too (the caller tells them apart)."""
    if not isinstance(raw, str) or len(raw) > MAX_KEY_LEN:
        raise MalformedKey("not a string of key length")
    m = _KEY_RE.match(raw)
    if m is None:
        raise MalformedKey("wrong shape")
    prefix, public_id, secret, crc = m.groups()
    if prefix != expected_prefix and (not test_prefix or prefix != test_prefix):
        raise MalformedKey("wrong prefix")
    if checksum(raw[:-CHECKSUM_LEN]) != crc:
        raise MalformedKey("bad checksum")
    return ParsedKey(prefix, public_id, secret)
