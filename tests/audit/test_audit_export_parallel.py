"""Export checks with worker processes (what big exports get by default) report
exactly what one process reports: the same root for an intact export, the same
first damage, named the same way, for damage anywhere in the file."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import pytest
from audit_helpers import build_log, run_offline

from app.audit import core, service

SPAN = 1500  # a few lines per worker task, so many ranges are in flight


@pytest.fixture
def exported(app, tmp_path):
    """An export of 120 events under 3 checkpoints, the log's keys and its vkey."""
    build_log(app, (40, 30, 50))
    out = tmp_path / "export.jsonl"
    result = app.test_cli_runner().invoke(args=["audit", "export", "-o", str(out)])
    assert result.exit_code == 0, result.output
    with app.app_context():
        settings = service.settings(app)
        return out, settings.trusted, settings.signer.vkey


def both(path: Path, keys: core.KeyRing, **kw) -> tuple[core.Report, core.Report]:
    single = core.verify_export_file(str(path), keys, workers=0, **kw)
    parallel = core.verify_export_file(str(path), keys, workers=2, span=SPAN, **kw)
    assert (single.workers, parallel.workers) == (0, 2)
    assert not any("failed" in note for note in parallel.notes), parallel.notes
    return single, parallel


def test_intact_export_same_root_with_workers(exported):
    path, keys, _ = exported
    single, parallel = both(path, keys)
    assert single.ok and parallel.ok, (single.summary(), parallel.summary())
    assert (parallel.events, parallel.checkpoints, parallel.root) == (120, 3, single.root)
    assert parallel.notes == ["checked by 2 worker processes"] and single.notes == []


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def _event(path: Path, seq: int) -> int:
    """The index in _lines of the line holding event `seq`."""
    for i, line in enumerate(_lines(path)):
        obj = json.loads(line)
        if obj.get("type") == "event" and obj["seq"] == seq:
            return i
    raise AssertionError(seq)


def _checkpoint(path: Path, n: int) -> int:
    found = [i for i, ln in enumerate(_lines(path)) if b'"type": "checkpoint"' in ln]
    return found[n]


def _flip_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))


def _edit_lines(fn):
    def edit(path: Path) -> None:
        path.write_bytes(b"".join(fn(path, _lines(path))))

    return edit


def _forge(path: Path, lines: list[bytes]) -> list[bytes]:
    """Event 77's bytes changed and its leaf hash restated: only the tree can tell."""
    i = _event(path, 77)
    obj = json.loads(lines[i])
    obj["canonical"] = obj["canonical"].replace("user:77", "user:78")
    obj["leaf_hash"] = core.leaf_hash(obj["canonical"].encode()).hex()
    lines[i] = (json.dumps(obj, sort_keys=True, ensure_ascii=False) + "\n").encode()
    return lines


def _replace(seq: int, new: bytes):
    def fn(path: Path, lines: list[bytes]) -> list[bytes]:
        lines[_event(path, seq)] = new
        return lines

    return fn


def _retype(path: Path, lines: list[bytes], seq: int) -> list[bytes]:
    i = _event(path, seq)
    lines[i] = lines[i].replace(b"user:", b"usex:")
    return lines


def _drop(i: int, lines: list[bytes]) -> list[bytes]:
    del lines[i]
    return lines


def _swap(i: int, lines: list[bytes]) -> list[bytes]:
    lines[i], lines[i + 1] = lines[i + 1], lines[i]
    return lines


DAMAGE = [
    ("a changed byte mid-file", _flip_middle, None),
    ("a changed event", _edit_lines(lambda p, ls: _retype(p, ls, 60)), "leaf_hash_mismatch"),
    ("an event forged", _edit_lines(_forge), "root_mismatch"),
    ("a removed line", _edit_lines(lambda p, ls: _drop(_event(p, 50), ls)), "event_missing"),
    ("a swapped pair", _edit_lines(lambda p, ls: _swap(_event(p, 70), ls)), "event_missing"),
    (
        "a swapped pair across a checkpoint",
        _edit_lines(lambda p, ls: _swap(_checkpoint(p, 0) - 1, ls)),
        "tail_missing",
    ),
    (
        "a removed checkpoint",
        _edit_lines(lambda p, ls: _drop(_checkpoint(p, 1), ls)),
        "checkpoint_missing",
    ),
    ("an event repeated late", _edit_lines(lambda p, ls: [*ls[:100], ls[90], *ls[100:]]), None),
    ("a blank line", _edit_lines(lambda p, ls: [*ls[:30], b"\n", *ls[30:]]), "malformed"),
    (
        "an over-long line",
        _edit_lines(lambda p, ls: [*ls[:80], b'"' + b"a" * core.MAX_LINE + b'"\n', *ls[80:]]),
        "malformed",
    ),
    ("cut mid-line", lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size * 2 // 3]), None),
    ("a pruned line in place of an event", _edit_lines(lambda p, ls: _replace(
        33, b'{"leaf_hash": "' + b"0" * 64 + b'", "seq": 33, "type": "leaf"}\n')(p, ls)),
        "root_mismatch"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "damage", "kind"), DAMAGE, ids=[d[0] for d in DAMAGE])
def test_damage_is_named_with_workers_as_in_one_process(exported, name, damage, kind):
    path, keys, _ = exported
    damage(path)
    single, parallel = both(path, keys)
    assert not single.ok, name
    assert parallel.summary() == single.summary(), name
    if kind is not None:
        assert single.damage.kind == kind, (name, single.summary())


def _root_at(path: Path, size: int) -> bytes:
    f = core.Frontier()
    for line in _lines(path):
        obj = json.loads(line)
        if obj.get("type") == "event" and f.size < size:
            f.append(bytes.fromhex(obj["leaf_hash"]))
    return f.root()


def test_a_trusted_checkpoint_inside_a_range_is_met_or_refused_the_same(exported):
    path, keys, _ = exported
    good = core.Trusted(35, _root_at(path, 35))
    single, parallel = both(path, keys, trusted=good)
    assert single.ok and parallel.ok and parallel.root == single.root
    forked = core.Trusted(35, _root_at(path, 34))
    single, parallel = both(path, keys, trusted=forked)
    assert not single.ok and single.damage.kind == "fork" and single.damage.seq == 35
    assert parallel.summary() == single.summary()


def test_ranges_are_whole_lines_covering_the_file(exported):
    path, _, _ = exported
    data = path.read_bytes()
    start = data.index(b"\n") + 1
    with path.open("rb") as fh:
        for size in (1, 7, 400, 1500, 10**6):
            spans = list(core.export._spans(fh, start, len(data), size))
            assert spans[0][0] == start and spans[-1][1] == len(data)
            assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
            assert all(data[hi - 1 : hi] == b"\n" for _, hi in spans)


def test_the_worker_count_is_honoured_by_the_command_line(exported):
    path, _, vkey = exported
    for workers, note in (("0", False), ("1", True), ("2", True), (None, False)):
        args = ["export", str(path), "--vkey", vkey]
        if workers is not None:
            args += ["--workers", workers]
        done = run_offline(*args)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("audit trail intact: 120 events"), done.stdout
        # A small file gets no workers by default (they would only cost time).
        assert (f"checked by {workers} worker process" in done.stdout) == note, done.stdout
    done = run_offline("export", str(path), "--vkey", vkey, "--workers", "-1")
    assert done.returncode == 2 and "--workers" in done.stderr


def test_damage_reads_the_same_on_the_command_line_with_workers(exported):
    path, _, vkey = exported
    _edit_lines(_forge)(path)
    outs = [run_offline("export", str(path), "--vkey", vkey, "--workers", w) for w in ("0", "2")]
    assert [o.returncode for o in outs] == [1, 1]
    assert outs[0].stderr == outs[1].stderr and "at seq 70: root_mismatch" in outs[0].stderr


def test_big_files_get_a_worker_per_core():
    cores = len(os.sched_getaffinity(0))
    assert core.export_workers(core.PARALLEL_MIN_BYTES - 1) == 0
    assert core.export_workers(core.PARALLEL_MIN_BYTES) == (cores if cores >= 2 else 0)
