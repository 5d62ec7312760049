"""The export check's fast paths against the strict path: an event line the fast
paths take is one the strict path (check_event_bytes on the strictly parsed line)
accepts, and the verdict on an export is the strict path's whichever path reads a
line. Exports here are built with the exporter's own line writer and signed like
the log signs them."""

from __future__ import annotations

import json
import random
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.audit import core
from app.audit import log as auditlog

ORIGIN = "test.example/log"
TIME = "2024-01-02T03:04:05.123456Z"


def body(**changes) -> dict:
    event = {
        "v": 1,
        "event_id": "0f3c2a9e8d7b6a5948372615a4b3c2d1",
        "time": TIME,
        "action": "key.created",
        "sensitivity": "medium",
        "actor": "user:7",
        "actor_ip": "192.0.2.7",
        "target": "key:k7",
        "outcome": "success",
        "details": {"n": 7, "name": "ci"},
    }
    event.update(changes)
    return event


def canonical(**changes) -> bytes:
    return core.canonical_dumps(body(**changes))


def edit(old: str, new: str, **changes) -> bytes:
    """Canonical bytes with one textual edit (to make them not canonical)."""
    data = canonical(**changes)
    assert old.encode() in data, (old, data)
    return data.replace(old.encode(), new.encode(), 1)


def event_line(seq: int, data: bytes) -> bytes:
    """The line the exporter writes for these stored bytes."""
    row = SimpleNamespace(seq=seq, leaf_hash=core.leaf_hash(data), canonical=data)
    return auditlog.export._event_line(row).encode()


@pytest.fixture(scope="module")
def signer():
    key = Ed25519PrivateKey.generate()
    keys = core.KeyRing(ORIGIN)
    keys.add_verifier(core.Verifier(ORIGIN, key.public_key()))
    return key, keys


HEADER = {
    "type": "header",
    "format": core.EXPORT_FORMAT,
    "origin": ORIGIN,
    "since": 0,
    "frontier": [],
    "public_keys": [],
    "exported_at": TIME,
}


def signed_export(key, lines: list[bytes], leaves: list[bytes]) -> list[bytes]:
    """Header, the given event lines, and one checkpoint over `leaves`."""
    f = core.Frontier()
    f.extend_blob(b"".join(leaves))
    note = core.format_note(ORIGIN, f.size, f.root(), 0, TIME, core.ZERO_HASH)
    sig = core.sign_note(note, ORIGIN, key)
    cp = core.load_checkpoint(note, sig.data, sig.key_id.hex())
    return [
        (json.dumps(HEADER, sort_keys=True) + "\n").encode(),
        *lines,
        (json.dumps({"type": "checkpoint", **cp.to_json()}, sort_keys=True) + "\n").encode(),
    ]


def strict_ok(data: bytes) -> bool:
    return core.check_event_bytes(data)[1] is None


def strict_takes(line: bytes) -> bool:
    """The strict path's verdict on an export's second line (the first event)."""
    header = (json.dumps(HEADER) + "\n").encode()
    check = core.export._ExportFold(header, core.KeyRing(ORIGIN), core.Report(ok=False), None)
    try:
        check.line(2, line)
    except core.Damage:
        return False
    return True


def scan_takes(line: bytes) -> bool:
    """Whether the fast paths take the line as event 0 (a run starting there) rather
    than pass it on as is. (A run starting elsewhere sends its first line to the
    strict path, which names the wrong seq.)"""
    (item,) = list(core.export._scan([line], 2))
    return item[2] == 0


def forge(line: bytes, old: bytes, new: bytes) -> bytes:
    """Edit an event line's bytes and restate its leaf hash as a forger would: the
    hash of its canonical part with every backslash dropped (what the first fast
    path hashes), so only the checks of the line's form can refuse it."""
    line = line.replace(old, new, 1)
    mark = line.rfind(b'", "leaf_hash": "')
    if mark < 0:
        return line
    data = line[len(b'{"canonical": "') : mark].translate(None, b"\\")
    at = mark + len(b'", "leaf_hash": "')
    return line[:at] + core.leaf_hash(data).hex().encode() + line[at + 64 :]


FIRST, SECOND, REFUSED = "first", "second", "refused"
SIX = {f"k{i}": i for i in range(6)}
# (name, canonical event bytes, which path takes the line)
CASES = [
    ("plain", canonical(), FIRST),
    ("empty details", canonical(details={}), FIRST),
    ("nulls", canonical(actor_ip=None, target=None), FIRST),
    ("true false null", canonical(details={"a": True, "b": False, "c": None}), FIRST),
    ("flat lists", canonical(details={"events": ["a", 1, None], "none": []}), FIRST),
    ("six members", canonical(details=SIX), FIRST),
    ("seven members", canonical(details={**SIX, "k6": 6}), SECOND),
    ("empty key and value", canonical(details={"": "", "a": 1}), FIRST),
    ("negative int", canonical(details={"n": -5}), FIRST),
    ("18-digit int", canonical(details={"n": 10**17}), FIRST),
    ("19-digit int", canonical(details={"n": 10**18}), SECOND),
    ("big int", canonical(details={"n": -(10**40)}), SECOND),
    ("non-ASCII", canonical(actor="user:ü", details={"name": "ci ✓ é", "x": "😀"}), FIRST),
    ("U+2028 and DEL", canonical(details={"s": "a\u2028b\x7f"}), FIRST),
    ("non-ASCII keys sorted", canonical(details={"z": 1, "é": 2, "😀": 3}), FIRST),
    ("escaped quote", canonical(details={"q": 'say "hi"'}), SECOND),
    ("escaped quote in actor", canonical(actor='user:"7"'), SECOND),
    ("backslash", canonical(details={"p": "C:\\dir\\"}), SECOND),
    ("controls", canonical(details={"s": "a\nb\tc\x01d\x1f"}), SECOND),
    ("key with a quote", canonical(details={'a"b': 1, "a#": 2}), SECOND),
    ("nested details", canonical(details={"a": {"b": [1, {"c": None}]}, "d": 1}), SECOND),
    ("keys out of order", edit('{"n":7,"name":"ci"}', '{"name":"ci","n":7}'), REFUSED),
    (
        "keys out of order, 4th",
        canonical(details=SIX).replace(b'"k3":3,"k4":4', b'"k4":4,"k3":3'),
        REFUSED,
    ),
    (
        "duplicate key, same value",
        edit('{"n":7,"name":"ci"}', '{"n":7,"n":7,"name":"ci"}'),
        REFUSED,
    ),
    ("duplicate key", edit('{"n":7,"name":"ci"}', '{"n":7,"n":8}'), REFUSED),
    ("duplicate escaped key", edit('{"n":7,', '{"n":7,"\\u006e":7,'), REFUSED),
    ("float", edit('"n":7', '"n":7.0'), REFUSED),
    ("exponent", edit('"n":7', '"n":7e0'), REFUSED),
    ("NaN", edit('"n":7', '"n":NaN'), REFUSED),
    ("minus zero", edit('"n":7', '"n":-0'), REFUSED),
    ("leading zero", edit('"n":7', '"n":07'), REFUSED),
    ("plus sign", edit('"n":7', '"n":+7'), REFUSED),
    ("space in details", edit('"n":7', '"n": 7'), REFUSED),
    ("space after a comma", edit('"actor":', ' "actor":'), REFUSED),
    ("space before the end", edit('"v":1}', '"v":1 }'), REFUSED),
    ("trailing newline", canonical() + b"\n", REFUSED),
    ("escaped slash", edit('"ci"', '"c\\/i"'), REFUSED),
    ("needless escape", edit('"ci"', '"\\u0063i"'), REFUSED),
    ("escaped non-ASCII", edit('"ci"', '"\\u00e9"'), REFUSED),
    (
        "upper-case escape",
        canonical(details={"s": "\x1f"}).replace(b"\\u001f", b"\\u001F"),
        REFUSED,
    ),
    (
        "long escape for newline",
        canonical(details={"s": "\n"}).replace(b"\\n", b"\\u000a"),
        REFUSED,
    ),
    ("lone surrogate", edit('"ci"', '"\\ud800"'), REFUSED),
    ("details a list", canonical(details=[1]), REFUSED),
    ("details null", canonical(details=None), REFUSED),
    ("version 2", canonical(v=2), REFUSED),
    ("version true", edit('"v":1', '"v":true'), REFUSED),
    ("unknown sensitivity", canonical(sensitivity="urgent"), REFUSED),
    ("unknown outcome", canonical(outcome="ok"), REFUSED),
    ("empty actor", canonical(actor=""), REFUSED),
    ("time without micros", canonical(time="2024-01-02T03:04:05Z"), REFUSED),
    (
        "time in Arabic-Indic digits",
        canonical(time="\u0662\u0660\u0662\u0664-01-02T03:04:05.000006Z"),
        REFUSED,
    ),
    ("time ending in a newline", canonical(time="2024-01-02T03:04:05.000006Z\n"), REFUSED),
    (
        "top-level order",
        edit('{"action":"key.created",', "{").replace(b'"v":1}', b'"v":1,"action":"key.created"}'),
        REFUSED,
    ),
    ("extra field", edit('"v":1}', '"v":1,"w":2}'), REFUSED),
    ("missing field", edit('"outcome":"success",', ""), REFUSED),
    ("trailing text", canonical() + b"x", REFUSED),
]


@pytest.mark.parametrize(("name", "data", "path"), CASES, ids=[c[0] for c in CASES])
def test_fast_paths_take_only_what_the_strict_path_accepts(signer, name, data, path):
    line = event_line(0, data)
    assert scan_takes(line) == strict_takes(line) == strict_ok(data) == (path != REFUSED), name
    first = core.export._EXPORT_EVENT.fullmatch(line) is not None
    if path == SECOND:
        assert not first and core.export._second_fast(line) is not None, name
    elif path == FIRST:
        assert first, name
    # The whole export: intact exactly when the strict path accepts the event.
    key, keys = signer
    report = core.verify_export(signed_export(key, [line], [core.leaf_hash(data)]), keys)
    assert report.ok == strict_ok(data), (name, report.summary())
    if not report.ok:
        assert (report.damage.kind, report.damage.seq) == ("bytes_not_canonical", 0), name


LINE_CASES = [
    # (name, edit of a good event line, taken by a fast path, accepted by the strict path)
    ("other key order", lambda ln: _relayout(ln, reverse=True), False, True),
    ("ASCII escapes", lambda ln: _relayout(ln, ensure_ascii=True), True, True),
    ("compact layout", lambda ln: _relayout(ln, separators=(",", ":")), False, True),
    ("no final newline", lambda ln: ln[:-1], True, True),
    ("CRLF", lambda ln: ln[:-1] + b"\r\n", False, False),
    ("upper-case leaf hash", lambda ln: _swap(ln, "leaf_hash", str.upper), False, False),
    ("seq with leading zero", lambda ln: ln.replace(b'"seq": 0', b'"seq": 00'), False, False),
    ("seq as a string", lambda ln: ln.replace(b'"seq": 0', b'"seq": "0"'), False, False),
    ("seq 2**63", lambda ln: ln.replace(b'"seq": 0', b'"seq": %d' % 2**63), False, False),
    ("invalid UTF-8", lambda ln: forge(ln, "ü".encode(), b"\xff"), False, False),
    ("UTF-8 surrogate", lambda ln: forge(ln, "ü".encode(), b"\xed\xa0\x80"), False, False),
    ("raw control byte", lambda ln: forge(ln, b"user", b"user\x01"), False, False),
    ("raw tab", lambda ln: forge(ln, b"user", b"user\t"), False, False),
    ("unescaped quote", lambda ln: forge(ln, b'\\"key.created', b'"key.created'), False, False),
    ("escaped backslash", lambda ln: forge(ln, b"user", b"us\\\\er"), False, False),
    ("unicode escape", lambda ln: ln.replace(b"user", b"\\u0075ser", 1), True, True),
    ("leaf hash of another event", lambda ln: _swap(ln, "leaf_hash", _other_leaf), False, False),
    ("duplicate seq", lambda ln: ln.replace(b'"seq": 0', b'"seq": 0, "seq": 0'), False, False),
    ("extra field", lambda ln: ln.replace(b'"seq": 0', b'"seq": 0, "x": 1'), False, False),
    ("type leaf", lambda ln: ln.replace(b'"type": "event"', b'"type": "leaf"'), False, False),
    ("longer than MAX_LINE", lambda ln: _long(ln), False, False),
]


def _relayout(line: bytes, reverse: bool = False, **dumps) -> bytes:
    obj = json.loads(line)
    if reverse:
        obj = dict(reversed(obj.items()))
    return (json.dumps(obj, **{"ensure_ascii": False, **dumps}) + "\n").encode()


def _swap(line: bytes, field: str, fn) -> bytes:
    obj = json.loads(line)
    obj[field] = fn(obj[field])
    return (json.dumps(obj, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _other_leaf(_: str) -> str:
    return core.leaf_hash(canonical(actor="user:8")).hex()


def _long(line: bytes) -> bytes:
    """A canonical event with a string long enough to push its line past MAX_LINE."""
    return event_line(0, canonical(details={"s": "x" * core.MAX_LINE}))


@pytest.mark.parametrize(
    ("name", "change", "taken", "accepted"), LINE_CASES, ids=[c[0] for c in LINE_CASES]
)
def test_line_layouts_other_than_the_exporters_go_to_the_strict_path(name, change, taken, accepted):
    line = change(event_line(0, canonical(actor="user:ü")))
    assert strict_takes(line) == accepted, name
    assert scan_takes(line) == taken, name


def _edit(rng: random.Random, data: bytes, alphabet: list[bytes]) -> bytes:
    out = bytearray(data)
    pos = rng.randrange(len(out))
    what = rng.randrange(3)
    if what == 0:
        out[pos : pos + 1] = rng.choice(alphabet)
    elif what == 1:
        out[pos:pos] = rng.choice(alphabet)
    else:
        del out[pos]
    return bytes(out)


ALPHABET = [bytes([c]) for c in b'"\\{}[],: -0179.eEnulltrfau\n\x01\x7f'] + ["é".encode(), b"\xff"]
SEEDS = [c[1] for c in CASES[:21]]


def test_random_event_edits_are_taken_only_when_canonical():
    """Thousands of one- and two-byte edits of canonical events (seeded), written by
    the exporter: whatever the fast paths take, the strict path accepts."""
    rng = random.Random(6962)
    taken = refused = 0
    for _ in range(4000):
        data = _edit(rng, rng.choice(SEEDS), ALPHABET)
        if rng.random() < 0.3:
            data = _edit(rng, data, ALPHABET)
        line = event_line(0, data)
        if scan_takes(line):
            assert strict_takes(line) and strict_ok(data), data
            taken += 1
        else:
            assert not strict_takes(line), data
            refused += 1
    assert taken > 300 and refused > 1000, (taken, refused)


def test_random_line_edits_are_taken_only_when_the_strict_path_accepts():
    """The same on the raw lines, leaf hashes restated (forged): a fast path takes
    a line only when the strict path accepts it."""
    rng = random.Random(9162)
    lines = [event_line(0, data) for data in SEEDS]
    taken = 0
    for _ in range(4000):
        line = lines[rng.randrange(len(lines))]
        edited = _edit(rng, line, ALPHABET)
        forged = forge(edited, b"", b"")
        for candidate in (edited, forged):
            if scan_takes(candidate):
                assert strict_takes(candidate), candidate
                taken += 1
    assert taken > 300, taken


def test_runs_break_where_seqs_do_and_every_leaf_is_kept():
    datas = [canonical(details={"n": i}) for i in range(10)]
    lines = [event_line(i, d) for i, d in enumerate(datas)]
    lines[6] = event_line(9, datas[6])  # a wrong seq starts a new run
    items = list(core.export._scan(lines, 2))
    assert [(i[0], i[2], len(i[3]) // 32) for i in items] == [(2, 0, 6), (8, 9, 1), (9, 7, 3)]
    assert b"".join(i[3] for i in items) == b"".join(core.leaf_hash(d) for d in datas)
