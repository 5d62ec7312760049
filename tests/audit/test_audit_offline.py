"""The offline verifier: independent RFC 6962 reference, export and proof round trips,
a run with Flask and SQLAlchemy blocked, and malformed input of every kind."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from audit_helpers import BLOCKER, build_log, bundle_path, run_offline
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.audit import core

ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- reference


def ref_mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 section 2.1, written from the text, recursively."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaves[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + ref_mth(leaves[:k]) + ref_mth(leaves[k:])).digest()


def ref_path(m: int, leaves: list[bytes]) -> list[bytes]:
    n = len(leaves)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return [*ref_path(m, leaves[:k]), ref_mth(leaves[k:])]
    return [*ref_path(m - k, leaves[k:]), ref_mth(leaves[:k])]


LEAVES = [core.leaf_hash(str(i).encode()) for i in range(70)]


def test_frontier_root_matches_the_rfc_definition_for_every_size():
    f = core.Frontier()
    assert f.root() == ref_mth([])
    for n, leaf in enumerate(LEAVES, 1):
        f.append(leaf)
        assert f.root() == ref_mth(LEAVES[:n]), n
        again = core.Frontier.from_bytes(n, f.to_bytes())
        assert again.root() == f.root()


def test_inclusion_proofs_check_for_every_leaf_and_fail_when_altered():
    for n in (1, 2, 3, 5, 8, 13, 64, 70):
        root = ref_mth(LEAVES[:n])
        for m in range(n):
            path = ref_path(m, LEAVES[:n])
            assert core.verify_inclusion(m, n, LEAVES[m], path, root)
            assert not core.verify_inclusion(m, n, LEAVES[(m + 1) % 70], path, root)
            assert not core.verify_inclusion(n, n, LEAVES[m], path, root)
            if path:
                assert not core.verify_inclusion(m, n, LEAVES[m], path[:-1], root)
                assert not core.verify_inclusion(m, n, LEAVES[m], [*path, path[0]], root)
                bad = [bytes(32), *path[1:]]
                assert not core.verify_inclusion(m, n, LEAVES[m], bad, root)


def test_no_duplicated_odd_node(app):
    """CVE-2012-2459: a tree of 3 leaves must not equal the tree of 4 with the last
    one repeated."""
    three = ref_mth(LEAVES[:3])
    assert core.mth(LEAVES[:3]) == three
    assert core.mth([*LEAVES[:3], LEAVES[2]]) != three


def test_server_proofs_match_the_reference_and_check_offline(app):
    build_log(app, (300, 30))  # crosses the 256-leaf node cache
    with app.app_context():
        from app.audit import log as auditlog
        from app.audit import service
        from app.extensions import db

        trusted = service.settings().trusted
        with db.engine.connect() as conn:
            leaves = [
                bytes(r[0])
                for r in conn.exec_driver_sql("SELECT leaf_hash FROM audit_event ORDER BY seq")
            ]
            for seq in (0, 1, 255, 256, 257, 299, 300, 329):
                proof = auditlog.inclusion_proof(conn, seq)
                assert proof["path"] == [p.hex() for p in ref_path(seq, leaves)]
                assert core.verify_proof_text(proof["text"], trusted).ok
                other = proof["text"].replace(f"\nindex {seq}\n", f"\nindex {(seq + 1) % 330}\n")
                assert not core.verify_proof_text(other, trusted).ok


# --------------------------------------------------------------------------- export


def export(app, tmp_path: Path, since: int = 0) -> tuple[Path, Path]:
    runner = app.test_cli_runner()
    out = tmp_path / f"export-{since}.jsonl"
    result = runner.invoke(args=["audit", "export", "--since", str(since), "-o", str(out)])
    assert result.exit_code == 0, result.output
    key = tmp_path / "key.pem"
    result = runner.invoke(args=["audit", "public-key"])
    assert result.exit_code == 0 and "BEGIN PUBLIC KEY" in result.output
    key.write_text(result.output)
    return out, key


def test_export_verifies_offline_with_flask_and_sqlalchemy_blocked(app, tmp_path):
    build_log(app, (12, 7))
    out, key = export(app, tmp_path)
    done = run_offline("export", str(out), "--public-key", str(key))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("audit trail intact: 19 events, 2 checkpoints")
    # The blocker really blocks: importing the app in the same way fails.
    blocked = subprocess.run(
        [
            sys.executable,
            "-c",
            BLOCKER.replace("runpy.run_path", "import app; runpy.run_path"),
            str(bundle_path()),
        ],
        capture_output=True,
        text=True,
        cwd=str(ROOT),
    )
    assert blocked.returncode != 0 and "blocked for the offline test" in blocked.stderr


def test_export_since_a_sequence_number_verifies(app, tmp_path):
    build_log(app, (12, 7, 5))
    for since in (1, 12, 13, 24):
        out, key = export(app, tmp_path, since)
        result = app.test_cli_runner().invoke(
            args=["audit", "verify", "--export", str(out), "--public-key", str(key)]
        )
        assert result.exit_code == 0, (since, result.output)
        assert f"{24 - since} events" in result.output


def test_flask_verify_export_reports_a_changed_event(app, tmp_path):
    build_log(app)
    out, key = export(app, tmp_path)
    lines = out.read_text().splitlines()
    ev = json.loads(lines[5])
    ev["canonical"] = ev["canonical"].replace("user:", "usr:")
    ev["leaf_hash"] = core.leaf_hash(ev["canonical"].encode()).hex()
    lines[5] = json.dumps(ev)
    out.write_text("\n".join(lines) + "\n")
    result = app.test_cli_runner().invoke(
        args=["audit", "verify", "--export", str(out), "--public-key", str(key)]
    )
    assert result.exit_code == 1
    assert "root_mismatch" in result.output


def test_proof_from_the_cli_checks_offline(app, tmp_path):
    build_log(app, (9,))
    result = app.test_cli_runner().invoke(args=["audit", "prove", "4"])
    assert result.exit_code == 0, result.output
    proof = tmp_path / "proof.json"
    proof.write_text(result.output)
    _, key = export(app, tmp_path)
    done = run_offline("proof", str(proof), "--public-key", str(key))
    assert done.returncode == 0, done.stderr
    assert "inclusion proof valid" in done.stdout
    lines = result.output.split("\n")
    assert lines[0] == "c2sp.org/tlog-proof@v1" and lines[2] == "index 4"
    event = base64.b64decode(lines[1].removeprefix("extra "))
    forged = event.replace(b"key.created", b"key.revoked")
    lines[1] = "extra " + base64.b64encode(forged).decode()
    proof.write_text("\n".join(lines))
    done = run_offline("proof", str(proof), "--public-key", str(key))
    assert done.returncode == 1 and "root_mismatch" in done.stderr
    # Told the leaf it expects, the verifier names the changed bytes.
    leaf = core.leaf_hash(event).hex()
    done = run_offline("proof", str(proof), "--public-key", str(key), "--leaf-hash", leaf)
    assert done.returncode == 1 and "leaf_hash_mismatch" in done.stderr
    missing = app.test_cli_runner().invoke(args=["audit", "prove", "99"])
    assert missing.exit_code == 1 and "not covered by a checkpoint" in missing.output


def test_wrong_public_key_fails_offline(app, tmp_path):
    build_log(app, (3,))
    out, _ = export(app, tmp_path)
    other = tmp_path / "other.pem"
    other.write_text(core.public_key_pem(Ed25519PrivateKey.generate().public_key()))
    done = run_offline("export", str(out), "--public-key", str(other))
    assert done.returncode == 1 and "unknown_key" in done.stderr
    other.write_text("not a key")
    done = run_offline("export", str(out), "--public-key", str(other))
    assert done.returncode == 2 and "cannot read public key" in done.stderr


# --------------------------------------------------------------------------- malformed


@pytest.fixture
def good_export(app, tmp_path):
    build_log(app, (4, 3))
    out, key = export(app, tmp_path)
    return out.read_bytes().splitlines(keepends=True), ring(key.read_text())


def ring(pem_text: str) -> core.KeyRing:
    keys = core.KeyRing("keyledger/audit")
    for key in core.load_public_keys(pem_text):
        keys.add_public_key(key)
    return keys


def _sig_edit(line: bytes, fn) -> bytes:
    """Replace the log signature's base64 (last line of the signed note) with fn(raw)."""
    obj = json.loads(line)
    text = obj["signed_note"]
    head, _, last = text[:-1].rpartition(" ")
    raw = base64.b64decode(last)
    new = fn(raw)
    obj["signed_note"] = (
        head + " " + (new if isinstance(new, str) else base64.b64encode(new).decode()) + "\n"
    )
    return (json.dumps(obj) + "\n").encode()


def _mutate_json(line: bytes, **changes) -> bytes:
    obj = json.loads(line)
    for k, v in changes.items():
        if v is KeyError:
            obj.pop(k, None)
        else:
            obj[k] = v
    return (json.dumps(obj) + "\n").encode()


def _note_edit(line: bytes, old: str, new: str) -> bytes:
    obj = json.loads(line)
    obj["signed_note"] = obj["signed_note"].replace(old, new, 1)
    return (json.dumps(obj) + "\n").encode()


def _note_sub(line: bytes, pattern: str, repl: str) -> bytes:
    obj = json.loads(line)
    obj["signed_note"] = re.sub(pattern, repl, obj["signed_note"])
    return (json.dumps(obj) + "\n").encode()


def _event_edit(line: bytes, old: str, new: str) -> bytes:
    """Change the event bytes and restate their leaf hash (only the tree can tell)."""
    obj = json.loads(line)
    obj["canonical"] = obj["canonical"].replace(old, new, 1)
    obj["leaf_hash"] = core.leaf_hash(obj["canonical"].encode()).hex()
    return (json.dumps(obj, sort_keys=True, ensure_ascii=False) + "\n").encode()


# Each case: (name, function(lines) -> lines, expected damage kind)
CASES = [
    (
        "float in details",
        lambda ls: [ls[0], _event_edit(ls[1], '"details":{', '"details":{"f":1.5,'), *ls[2:]],
        "bytes_not_canonical",
    ),
    (
        "escaped lone surrogate in event",
        lambda ls: [ls[0], _event_edit(ls[1], '"details":{', '"details":{"s":"\\ud800",'), *ls[2:]],
        "bytes_not_canonical",
    ),
    (
        "space in event",
        lambda ls: [ls[0], _event_edit(ls[1], '"actor":', '"actor": '), *ls[2:]],
        "bytes_not_canonical",
    ),
    (
        "unsorted event keys",
        lambda ls: [ls[0], _event_edit(ls[1], '{"action"', '{"zz":1,"action"'), *ls[2:]],
        "bytes_not_canonical",
    ),
    (
        "escaped slash",
        lambda ls: [ls[0], _event_edit(ls[1], '"actor":"', '"actor":"\\/'), *ls[2:]],
        "bytes_not_canonical",
    ),
    ("empty", lambda ls: [], "malformed"),
    ("not json", lambda ls: [b"{nope\n", *ls[1:]], "malformed"),
    ("invalid utf-8", lambda ls: [ls[0], b'{"type":"event","seq":0,"x":"\xff"}\n'], "malformed"),
    ("blank line", lambda ls: [ls[0], b"\n", *ls[1:]], "malformed"),
    ("crlf", lambda ls: [ls[0].replace(b"\n", b"\r\n"), *ls[1:]], "malformed"),
    ("header missing", lambda ls: ls[1:], "malformed"),
    ("header twice", lambda ls: [ls[0], *ls], "malformed"),
    ("wrong format", lambda ls: [_mutate_json(ls[0], format="other/9"), *ls[1:]], "malformed"),
    ("since negative", lambda ls: [_mutate_json(ls[0], since=-1), *ls[1:]], "malformed"),
    ("since bool", lambda ls: [_mutate_json(ls[0], since=True), *ls[1:]], "malformed"),
    (
        "frontier too long",
        lambda ls: [_mutate_json(ls[0], frontier=["00" * 32]), *ls[1:]],
        "malformed",
    ),
    ("frontier not list", lambda ls: [_mutate_json(ls[0], frontier="x"), *ls[1:]], "malformed"),
    ("origin missing", lambda ls: [_mutate_json(ls[0], origin=KeyError), *ls[1:]], "malformed"),
    ("array line", lambda ls: [ls[0], b"[1,2]\n", *ls[1:]], "malformed"),
    ("unknown type", lambda ls: [ls[0], b'{"type":"witness"}\n', *ls[1:]], "malformed"),
    ("nan", lambda ls: [ls[0], b'{"type":"event","seq":NaN}\n', *ls[1:]], "malformed"),
    ("float seq", lambda ls: [ls[0], _mutate_json(ls[1], seq=0.0), *ls[2:]], "malformed"),
    ("string seq", lambda ls: [ls[0], _mutate_json(ls[1], seq="0"), *ls[2:]], "malformed"),
    ("huge seq", lambda ls: [ls[0], _mutate_json(ls[1], seq=10**30), *ls[2:]], "malformed"),
    (
        "duplicate key",
        lambda ls: [ls[0], ls[1].replace(b'{"canonical"', b'{"seq":0,"canonical"', 1), *ls[2:]],
        "malformed",
    ),
    ("extra field", lambda ls: [ls[0], _mutate_json(ls[1], extra=1), *ls[2:]], "malformed"),
    (
        "leaf not hex",
        lambda ls: [ls[0], _mutate_json(ls[1], leaf_hash="zz" * 32), *ls[2:]],
        "malformed",
    ),
    ("leaf short", lambda ls: [ls[0], _mutate_json(ls[1], leaf_hash="ab"), *ls[2:]], "malformed"),
    (
        "leaf upper",
        lambda ls: [ls[0], _mutate_json(ls[1], leaf_hash="AB" * 32), *ls[2:]],
        "malformed",
    ),
    (
        "canonical number",
        lambda ls: [ls[0], _mutate_json(ls[1], canonical=5), *ls[2:]],
        "malformed",
    ),
    (
        "lone surrogate",
        lambda ls: [ls[0], ls[1].replace(b'"canonical": "', b'"canonical": "\\ud800', 1), *ls[2:]],
        "malformed",
    ),
    (
        "leaf mismatch",
        lambda ls: [ls[0], _mutate_json(ls[1], leaf_hash="00" * 32), *ls[2:]],
        "leaf_hash_mismatch",
    ),
    ("skipped event", lambda ls: [ls[0], *ls[2:]], "event_missing"),
    ("repeated event", lambda ls: [ls[0], ls[1], ls[1], *ls[2:]], "event_order"),
    ("swapped events", lambda ls: [ls[0], ls[2], ls[1], *ls[3:]], "event_missing"),
    ("cut before checkpoint", lambda ls: [*ls[:4], ls[5]], "tail_missing"),
    ("no checkpoint", lambda ls: ls[:5], "event_uncovered"),
    ("trailing event", lambda ls: [*ls, ls[1]], "event_order"),
    (
        "signature not b64",
        lambda ls: [*ls[:5], _sig_edit(ls[5], lambda r: "***"), *ls[6:]],
        "malformed",
    ),
    (
        "signature short",
        lambda ls: [*ls[:5], _sig_edit(ls[5], lambda r: r[:3]), *ls[6:]],
        "malformed",
    ),
    (
        "signature flipped",
        lambda ls: [*ls[:5], _sig_edit(ls[5], lambda r: r[:4] + bytes(64)), *ls[6:]],
        "bad_signature",
    ),
    (
        "unknown key id",
        lambda ls: [*ls[:5], _sig_edit(ls[5], lambda r: b"\0\0\0\0" + r[4:]), *ls[6:]],
        "unknown_key",
    ),
    (
        "no signature line",
        lambda ls: [
            *ls[:5],
            _mutate_json(
                ls[5], signed_note=json.loads(ls[5])["signed_note"].rsplit("\n\n", 1)[0] + "\n\n"
            ),
            *ls[6:],
        ],
        "malformed",
    ),
    (
        "note size text",
        lambda ls: [*ls[:5], _note_edit(ls[5], "\n4\n", "\nfour\n"), *ls[6:]],
        "malformed",
    ),
    (
        "note leading zero",
        lambda ls: [*ls[:5], _note_edit(ls[5], "\n4\n", "\n04\n"), *ls[6:]],
        "malformed",
    ),
    (
        "note extra line",
        lambda ls: [*ls[:5], _note_edit(ls[5], "index", "x\nindex"), *ls[6:]],
        "malformed",
    ),
    (
        "note no newline",
        lambda ls: [*ls[:5], _mutate_json(ls[5], signed_note="a\n1"), *ls[6:]],
        "malformed",
    ),
    (
        "note control character",
        lambda ls: [*ls[:5], _note_edit(ls[5], "index", "in\x01dex"), *ls[6:]],
        "malformed",
    ),
    (
        "note bad time",
        lambda ls: [*ls[:5], _note_edit(ls[5], "time 20", "time 19"), *ls[6:]],
        "bad_signature",
    ),
    (
        "note impossible time",
        lambda ls: [*ls[:5], _note_sub(ls[5], r"time (\d{4})-\d\d", r"time \1-13"), *ls[6:]],
        "malformed",
    ),
    (
        "note order",
        lambda ls: [
            *ls[:5],
            _note_edit(_note_edit(ls[5], "index", "zzz"), "prev", "index"),
            *ls[6:],
        ],
        "malformed",
    ),
    (
        "checkpoint extra field",
        lambda ls: [*ls[:5], _mutate_json(ls[5], more=1), *ls[6:]],
        "malformed",
    ),
    ("dropped first checkpoint", lambda ls: [*ls[:5], *ls[6:]], "checkpoint_missing"),
    ("checkpoint twice", lambda ls: [*ls[:6], ls[5], *ls[6:]], "checkpoint_missing"),
    ("deep json", lambda ls: [ls[0], b"[" * 100000 + b"]" * 100000 + b"\n"], "malformed"),
    ("long line", lambda ls: [ls[0], b'"' + b"a" * (core.MAX_LINE + 5) + b'"\n'], "malformed"),
]


@pytest.mark.parametrize(("name", "mutate", "kind"), CASES, ids=[c[0] for c in CASES])
def test_malformed_exports_are_named_never_crash(good_export, name, mutate, kind):
    lines, keys = good_export
    assert core.verify_export(lines, keys).ok
    report = core.verify_export(mutate(list(lines)), keys)
    assert not report.ok, name
    assert report.damage is not None and report.damage.kind == kind, (name, report.summary())
    assert report.summary().startswith("audit trail DAMAGED")


def _proof_lines(t: str, fn) -> str:
    head, sep, note = t.partition("\n\n")
    return "\n".join(fn(head.split("\n"))) + sep + note


Z = base64.b64encode(bytes(32)).decode()
PROOF_CASES = [
    ("empty", lambda t: ""),
    ("wrong header", lambda t: t.replace("c2sp.org/tlog-proof@v1", "c2sp.org/tlog-proof@v2")),
    ("index text", lambda t: t.replace("index 3", "index three")),
    ("index leading zero", lambda t: t.replace("index 3", "index 03")),
    ("index other", lambda t: t.replace("index 3", "index 4")),
    ("index beyond", lambda t: t.replace("index 3", "index 6")),
    ("no index", lambda t: _proof_lines(t, lambda ls: [ls[0], ls[1], *ls[3:]])),
    ("path bad base64", lambda t: _proof_lines(t, lambda ls: [*ls[:3], "***", *ls[4:]])),
    ("path short hash", lambda t: _proof_lines(t, lambda ls: [*ls[:3], "AAAA", *ls[4:]])),
    ("extra path node", lambda t: _proof_lines(t, lambda ls: [*ls, Z])),
    ("path node dropped", lambda t: _proof_lines(t, lambda ls: ls[:-1])),
    ("path node zeroed", lambda t: _proof_lines(t, lambda ls: [*ls[:3], Z, *ls[4:]])),
    ("extra changed", lambda t: _proof_lines(t, lambda ls: [ls[0], ls[1][:-4] + "AAAA", *ls[2:]])),
    ("extra not base64", lambda t: _proof_lines(t, lambda ls: [ls[0], "extra ***", *ls[2:]])),
    ("no checkpoint", lambda t: t.partition("\n\n")[0] + "\n"),
    ("checkpoint unsigned", lambda t: t.rsplit("\n\n", 1)[0] + "\n"),
    ("checkpoint size", lambda t: t.replace("\n6\n", "\n7\n")),
    ("crlf", lambda t: t.replace("\n", "\r\n")),
]


@pytest.mark.parametrize(("name", "mutate"), PROOF_CASES, ids=[c[0] for c in PROOF_CASES])
def test_malformed_proofs_fail_cleanly(app, name, mutate):
    build_log(app, (6,))
    with app.app_context():
        from app.audit import log as auditlog
        from app.audit import service
        from app.extensions import db

        with db.engine.connect() as conn:
            proof = auditlog.inclusion_proof(conn, 3)
        keys = service.settings().trusted
    assert core.verify_proof_text(proof["text"], keys).ok
    report = core.verify_proof_text(mutate(proof["text"]), keys)
    assert not report.ok, name


@pytest.mark.xdist_group("servers")  # builds a virtualenv: pip in a process of its own
@pytest.mark.timeout(600)  # makes a virtualenv and installs into it
# The build and the clean virtualenv are the point; exports from PostgreSQL are the
# other tests' business.
@pytest.mark.any_database
def test_the_verifier_built_from_the_package_runs_in_a_clean_virtualenv(app, tmp_path):
    """`flask audit verifier` builds a zipapp of app/audit/core, byte for byte the
    same each time; it runs in a fresh virtualenv that holds only `cryptography`."""
    import zipfile

    build_log(app, (12, 7))
    out, key = export(app, tmp_path)
    pyz = tmp_path / "keyledger_verify.pyz"
    result = app.test_cli_runner().invoke(args=["audit", "verifier", "-o", str(pyz)])
    assert result.exit_code == 0, result.output
    again = tmp_path / "again.pyz"
    app.test_cli_runner().invoke(args=["audit", "verifier", "-o", str(again)])
    assert pyz.read_bytes() == again.read_bytes()
    modules = {p.name for p in (ROOT / "app" / "audit" / "core").glob("*.py")}
    with zipfile.ZipFile(pyz) as zf:
        names = {n for n in zf.namelist() if not n.endswith("/")}
    assert names == {"__main__.py"} | {f"keyledger_audit/{m}" for m in modules}

    env = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True, timeout=120)
    python = str(env / "bin" / "python")
    pip = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "cryptography"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert pip.returncode == 0, pip.stderr
    listed = subprocess.run(
        [python, "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True
    ).stdout
    installed = {line.split("==")[0].lower() for line in listed.split()}
    assert installed <= {"cryptography", "cffi", "pycparser", "pip", "setuptools"}, installed

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [python, "-I", str(pyz), *args], capture_output=True, text=True, cwd=tmp_path
        )

    for workers in ("0", "2"):
        done = run("export", str(out), "--public-key", str(key), "--workers", workers)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("audit trail intact: 19 events, 2 checkpoints")
    lines = out.read_text().splitlines()
    lines[3] = lines[3].replace("user:", "usr:")
    out.write_text("\n".join(lines) + "\n")
    done = run("export", str(out), "--public-key", str(key))
    assert done.returncode == 1 and "DAMAGED" in done.stderr
    assert run("export").returncode == 2
