"""Canonical event bytes: what is hashed is exactly what is stored.

RFC 8785-style JSON: sorted keys, no insignificant white space, UTF-8, times as UTC
ISO-8601 with microseconds and a `Z`. Floats are refused (their text form is where
JSON canonicalisers disagree); details carry strings, integers, booleans and null.
This module imports nothing from Flask, so the offline verifier can use it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from app.audit.offline import LEAF_PREFIX, NODE_PREFIX, leaf_hash

__all__ = ["LEAF_PREFIX", "NODE_PREFIX", "dumps", "format_time", "leaf_hash", "parse_time"]


def format_time(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("audit times must be timezone-aware")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def _check(value: Any, path: str = "details") -> None:
    if isinstance(value, bool | int | str) or value is None:
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{path}: keys must be strings")
            _check(v, f"{path}.{k}")
        return
    if isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check(v, f"{path}[{i}]")
        return
    raise TypeError(f"{path}: {type(value).__name__} is not allowed in an audit event")


def dumps(value: Any) -> bytes:
    _check(value, "event")
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
