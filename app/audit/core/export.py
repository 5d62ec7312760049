"""Reading an export (JSON lines): the fast paths, the strict path, the fold over
its lines, and the split of a big file across worker processes."""

from __future__ import annotations

import binascii
import contextlib
import hashlib
import io
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .checkpoints import Checkpoint, checkpoint_from_json, parse_signed_checkpoint, valid_cosigners
from .events import _ENCODER, _no_constants, check_event_bytes, strict_loads
from .fold import Fold, Trusted
from .hashing import HASH_SIZE, MAX_PROOF, Frontier
from .notes import HEX64_RE, MAX_LINE, KeyRing
from .parallel import ordered_map, usable_cores
from .report import Damage, Report

EXPORT_FORMAT = "keyledger-audit-export/2"
EXPORT_FORMATS = ("keyledger-audit-export/1", EXPORT_FORMAT)


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
    cores = usable_cores()
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
    with open(path, "rb") as fh:
        check = _ExportFold(fh.readline() or None, keys, rep, trusted)
        spans = _spans(fh, fh.tell(), os.fstat(fh.fileno()).st_size, span)
        number = 2  # the first line of the next range
        results = ordered_map(_scan_span, ((path, lo, hi) for lo, hi in spans), workers)
        # Closed here on damage, not whenever the collector gets to it: waiting for the
        # workers then happens in this call, where an error or a timeout is seen.
        with contextlib.closing(results):
            for items, count in results:
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
