"""The one canonical event encoding, strict JSON and the event checks: the exact
bytes a leaf hashes."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from typing import Any

from .hashing import HASH_SIZE
from .report import Damage

# ASCII digits only, and nothing after the Z (\d takes other scripts' digits, $ a newline).
TIME_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")
EVENT_FIELDS = frozenset(
    ("v", "event_id", "time", "action", "sensitivity", "actor", "actor_ip", "target", "outcome")
) | {"details"}
SENSITIVITIES = ("low", "medium", "high", "critical")
OUTCOMES = ("success", "failure", "denied")
_SENSITIVITY_SET = frozenset(SENSITIVITIES)
_OUTCOME_SET = frozenset(OUTCOMES)


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
