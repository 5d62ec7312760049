"""What text the product accepts: one check for every form field and every JSON string.

Refused anywhere: NUL and the other C0/C1 control characters (PostgreSQL refuses NUL
outright; the rest corrupt logs, CSV and terminals), format characters (Unicode
category Cf: bidi overrides and isolates that make "txt.exe" read as "exe.txt",
zero-width spaces and joiners that make two identical-looking names differ, the BOM,
soft hyphens), line/paragraph separators and lone surrogates (which no database
encoding can store). Multi-line fields (notes) may hold tab, line feed and carriage
return. Plain Python, no Flask: domain code, forms and the API all call it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from typing import Any

# The ASCII part as one regex: most input is ASCII, and this is the only work it gets.
_ASCII_BAD = re.compile(r"[\x00-\x1f\x7f]")
_ASCII_BAD_MULTILINE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Categories refused beyond ASCII: controls (C1), format, surrogates, line/para separators.
_BAD_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_ALLOWED_MULTILINE = frozenset("\t\n\r")

_KIND = {
    "Cc": "a control character",
    "Cf": "an invisible formatting character (bidi override or zero-width)",
    "Cs": "an unpaired surrogate",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
}


def problem(value: str, *, multiline: bool = False) -> str | None:
    """Why `value` is refused (naming the first bad character), or None when it is fine."""
    ascii_bad = _ASCII_BAD_MULTILINE if multiline else _ASCII_BAD
    if value.isascii():
        m = ascii_bad.search(value)
        return None if m is None else _describe(m.group())
    for ch in value:
        if multiline and ch in _ALLOWED_MULTILINE:
            continue
        if unicodedata.category(ch) in _BAD_CATEGORIES:
            return _describe(ch)
    return None


def _describe(ch: str) -> str:
    kind = _KIND.get(unicodedata.category(ch), "a control character")
    return f"contains {kind} (U+{ord(ch):04X}); remove it and try again"


def _strings(obj: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(obj, str):
        yield path, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(k, str):
                yield f"{path} key", k
            yield from _strings(v, f"{path}.{k}" if path else str(k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _strings(v, f"{path}[{i}]")


def unsafe_json(obj: Any) -> str | None:
    """The first refused string anywhere in a decoded JSON document (keys included),
    as a message naming where it is; None when every string is fine."""
    for path, value in _strings(obj, ""):
        why = problem(value)
        if why is not None:
            return f'"{path or "body"}" {why}'
    return None


def normalize_email(email: str) -> str:
    """The one spelling of an address that uniqueness is decided on.

    NFKC folds compatibility forms (fullwidth letters, ligatures, the fullwidth @) to
    what they look like, so a fullwidth "a" or "@" is the plain one. The whole address is then
    lower-cased: the domain is case-insensitive by RFC 5321 and, although the local
    part formally is not, no mail provider in use treats it so and two accounts that
    differ only in case would be a phishing aid (docs/decisions.md).
    """
    return unicodedata.normalize("NFKC", email).strip().lower()
