"""The log to the transparency-log standard: C2SP signed notes checked by a verifier
written here from the spec, the RFC 6962 reference vectors, consistency proofs, a
trusted checkpoint against a truncated export, the fork scenario refused, the public
endpoints, retention and monitoring."""

from __future__ import annotations

import base64
import glob
import hashlib
import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from audit_helpers import (
    add_events,
    build_log,
    rewind_to,
    run_offline,
    scalar,
    seal,
    tamper,
    verify,
)
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import text

from app.audit import core, service, trail
from app.audit import log as auditlog
from app.extensions import db

VECTORS = Path(__file__).resolve().parents[3] / "shared" / "vectors" / "rfc6962"
if not VECTORS.exists():
    VECTORS = Path("/work/shared/vectors/rfc6962")


# --------------------------------------------------------------------------- signed notes


def spec_verify_note(note: str, vkey: str) -> str:
    """C2SP signed-note verification, step by step from the spec (not our code):
    returns the note text when a signature by the vkey's key verifies."""
    name, kid_hex, material = vkey.split("+", 2)
    raw = base64.b64decode(material)
    assert raw[0] == 0x01 and len(raw) == 33, "an Ed25519 vkey"
    assert hashlib.sha256(name.encode() + b"\n" + b"\x01" + raw[1:]).digest()[:4].hex() == kid_hex
    assert note.endswith("\n")
    assert all(c == "\n" or ord(c) >= 0x20 for c in note), "no control characters"
    cut = note.rindex("\n\n")
    body, signatures = note[: cut + 1], note[cut + 2 :].splitlines()
    assert signatures
    key = Ed25519PublicKey.from_public_bytes(raw[1:])
    for line in signatures:
        assert line.startswith("\u2014 ")
        sig_name, b64 = line[2:].split(" ")
        sig = base64.b64decode(b64)
        if sig_name == name and sig[:4].hex() == kid_hex:
            key.verify(sig[4:], body.encode())  # raises on a bad signature
            return body
    raise AssertionError("no signature by this key")


def test_the_spec_verifier_accepts_the_c2sp_example():
    """The spec's own example, so the reference verifier above is itself right."""
    vkey = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
    note = (
        "This is an example message.\n\n\u2014 example.com/foo "
        "Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
    )
    assert spec_verify_note(note, vkey) == "This is an example message.\n"
    with pytest.raises(InvalidSignature):
        spec_verify_note(note.replace("example", "Example", 1), vkey)
    assert core.parse_vkey(vkey).key_id.hex() == "530d903a"


def test_public_checkpoint_is_a_c2sp_signed_note_under_the_published_vkey(app, client):
    build_log(app, (7, 6))
    vkey = app.test_cli_runner().invoke(args=["audit", "public-key", "--vkey"]).output.strip()
    assert vkey.startswith("keyledger/audit+")
    resp = client.get("/audit/checkpoint")
    assert resp.status_code == 200 and resp.mimetype == "text/plain"
    note = resp.get_data(as_text=True)
    body = spec_verify_note(note, vkey)
    origin, size, root, *extensions = body.splitlines()
    leaves = [
        bytes(r[0])
        for r in [
            (scalar(app, "SELECT leaf_hash FROM audit_event WHERE seq = :s", s=i),)
            for i in range(13)
        ]
    ]
    assert (origin, size) == ("keyledger/audit", "13")
    assert base64.b64decode(root) == core.mth(leaves)
    assert [e.split(" ")[0] for e in extensions] == ["index", "time", "prev"]
    # One changed byte in the text and the spec verifier refuses it.
    with pytest.raises(InvalidSignature):
        spec_verify_note(note.replace("\n13\n", "\n14\n"), vkey)


def _legacy_note(origin, size, root, index, time, kid, prev) -> bytes:
    """The format-1 note (seven lines, with a key line) the log used to sign."""
    return (
        f"{origin}\n{size}\n{base64.b64encode(root).decode()}\nindex {index}\n"
        f"time {time}\nkey {kid}\nprev {prev.hex()}\n"
    ).encode()


def test_a_log_signed_in_the_old_json_form_keeps_verifying_and_continues(app, tmp_path):
    """Checkpoints from before signed notes (JSON {note, signature}, 16-hex key id) stay
    verifiable, in the database, the anchor and exports, and the chain continues."""
    build_log(app, (4, 3))
    with app.app_context():
        signer = service.settings().signer
        legacy_id = core.legacy_key_id(signer.public)
        with db.engine.connect() as conn:
            rows = conn.execute(
                text("SELECT idx, tree_size, root_hash, note FROM audit_checkpoint ORDER BY idx")
            ).all()
    prev = core.ZERO_HASH
    statements, anchor = [], []
    for idx, size, root, note in rows:
        time = bytes(note).decode().split("\ntime ")[1].split("\n")[0]
        old = _legacy_note("keyledger/audit", size, bytes(root), idx, time, legacy_id, prev)
        sig = signer.private.sign(old)
        prev = hashlib.sha256(old).digest()
        statements.append(
            (
                "UPDATE audit_checkpoint SET note = :n, signature = :s, key_id = :k WHERE idx = :i",
                {"n": old, "s": sig, "k": legacy_id, "i": idx},
            )
        )
        anchor.append(
            json.dumps(
                {
                    "type": "checkpoint",
                    "note": old.decode(),
                    "signature": base64.b64encode(sig).decode(),
                },
                sort_keys=True,
            )
            + "\n"
        )
    tamper(app, *statements)
    anchor_path = Path(app.instance_path, "audit_anchor.jsonl")
    anchor_path.write_text("".join(anchor))
    assert verify(app).exit_code == 0, verify(app).output
    add_events(app, 2, start=7)
    seal(app)
    result = verify(app)
    assert result.exit_code == 0, result.output
    assert "9 events, 3 checkpoints" in result.output
    # The anchor now holds two JSON lines, then a signed note.
    assert (
        anchor_path.read_text().count("\n{") == 1
        and "\u2014 keyledger/audit " in anchor_path.read_text()
    )
    out = tmp_path / "export.jsonl"
    app.test_cli_runner().invoke(args=["audit", "export", "-o", str(out)])
    kinds = [sorted(json.loads(line)) for line in out.read_text().splitlines()]
    assert ["note", "signature", "type"] in kinds and ["signed_note", "type"] in kinds
    key = tmp_path / "key.pem"
    key.write_text(core.public_key_pem(signer.public))
    done = run_offline("export", str(out), "--public-key", str(key))
    assert done.returncode == 0, done.stderr


# --------------------------------------------------------------------------- vectors


def _b(value: str | None) -> bytes:
    return base64.b64decode(value) if value else b""


def _vectors(kind: str) -> list[tuple[str, dict]]:
    files = sorted(glob.glob(str(VECTORS / kind / "*" / "*.json")))
    assert len(files) > 50, f"the {kind} vectors are missing"
    return [
        (Path(f).parent.name + "/" + Path(f).name, json.loads(Path(f).read_text())) for f in files
    ]


def test_bulk_leaf_appends_build_the_same_tree_from_any_size():
    """Frontier.extend_blob hashes aligned runs as whole subtrees: the tree (root and
    frontier) must equal leaf-by-leaf appends and RFC 6962's recursive MTH, whatever
    size it starts from and however many leaves arrive."""

    def mth(leaves: list[bytes]) -> bytes:  # RFC 6962 section 2.1, as written
        if len(leaves) == 1:
            return leaves[0]
        k = core.largest_power_of_two_below(len(leaves))
        return core.node_hash(mth(leaves[:k]), mth(leaves[k:]))

    leaves = [hashlib.sha256(b"leaf %d" % i).digest() for i in range(5000)]
    for start, count in [(0, 1), (0, 4096), (1, 4095), (7, 9), (8, 4104), (4095, 905), (3, 0)]:
        bulk = core.Frontier()
        bulk.extend_blob(b"".join(leaves[:start]))
        bulk.extend_blob(b"".join(leaves[start : start + count]))
        one = core.Frontier()
        for leaf in leaves[: start + count]:
            one.append(leaf)
        assert (bulk.size, bulk.to_bytes()) == (one.size, one.to_bytes()), (start, count)
        if start + count:
            assert bulk.root() == mth(leaves[: start + count]), (start, count)
    with pytest.raises(ValueError):
        core.Frontier(size=1, hashes=[leaves[0]]).append_subtree(1, leaves[1])


def test_rfc6962_reference_vectors_in_the_app():
    wrong = []
    for name, v in _vectors("inclusion"):
        ok = core.verify_inclusion(
            v["leafIdx"],
            v["treeSize"],
            _b(v["leafHash"]),
            [_b(p) for p in v["proof"] or []],
            _b(v["root"]),
        )
        if ok == v["wantErr"]:
            wrong.append(name)
    for name, v in _vectors("consistency"):
        ok = core.verify_consistency(
            v["size1"],
            v["size2"],
            _b(v["root1"]),
            _b(v["root2"]),
            [_b(p) for p in v["proof"] or []],
        )
        if ok == v["wantErr"]:
            wrong.append(name)
    assert wrong == []
    assert sum(not v["wantErr"] for _, v in _vectors("consistency")) >= 1


VECTOR_RUNNER = """
import base64, glob, json, sys
sys.argv = ["keyledger_verify.py"]
sys.path.insert(0, "keyledger_verify.pyz")
import keyledger_audit
ns = vars(keyledger_audit)
b = lambda x: base64.b64decode(x) if x else b""
wrong = n = 0
for f in sorted(glob.glob(VECTORS + "/inclusion/*/*.json")):
    v = json.load(open(f)); n += 1
    ok = ns["verify_inclusion"](v["leafIdx"], v["treeSize"], b(v["leafHash"]),
                                [b(p) for p in v["proof"] or []], b(v["root"]))
    wrong += ok == v["wantErr"]
for f in sorted(glob.glob(VECTORS + "/consistency/*/*.json")):
    v = json.load(open(f)); n += 1
    ok = ns["verify_consistency"](v["size1"], v["size2"], b(v["root1"]), b(v["root2"]),
                                  [b(p) for p in v["proof"] or []])
    wrong += ok == v["wantErr"]
print(n, wrong)
"""


def test_rfc6962_reference_vectors_in_the_standalone_verifier():
    from audit_helpers import BLOCKER, bundle_path

    code = BLOCKER.split("sys.argv")[0] + f"VECTORS = {str(VECTORS)!r}\n" + VECTOR_RUNNER
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-I", "-c", code],
        capture_output=True,
        text=True,
        cwd=str(bundle_path().parent),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    n, wrong = map(int, done.stdout.split())
    assert n == len(_vectors("inclusion")) + len(_vectors("consistency")) and wrong == 0


# --------------------------------------------------------------------------- consistency


def test_consistency_proofs_from_the_stored_tree_check_for_every_old_size(app):
    build_log(app, (300, 30))  # crosses the 256-leaf node cache
    with app.app_context(), db.engine.connect() as conn:
        leaves = [
            bytes(r[0])
            for r in conn.exec_driver_sql("SELECT leaf_hash FROM audit_event ORDER BY seq")
        ]
        keys = service.settings().trusted
        for old in (1, 2, 3, 7, 8, 9, 255, 256, 257, 299, 300, 329, 330):
            doc = auditlog.consistency_proof(conn, old)
            size, proof, cp = core.parse_consistency_proof(doc, keys)
            assert size == old and cp.tree_size == 330
            assert core.verify_consistency(old, 330, core.mth(leaves[:old]), cp.root, proof) or (
                old == 330 and not proof
            )
            # The proof of one size does not pass for another.
            if 1 < old < 330:
                assert not core.verify_consistency(
                    old - 1, 330, core.mth(leaves[: old - 1]), cp.root, proof
                )


def _checkpoint_file(app, tmp_path: Path, size: int) -> Path:
    with app.app_context(), db.engine.connect() as conn:
        cp = auditlog.checkpoint_at(conn, size)
    path = tmp_path / f"cp-{size}.txt"
    path.write_text(cp.signed_note())
    return path


def test_consistency_command_checks_offline_against_a_trusted_checkpoint(app, tmp_path):
    build_log(app, (5, 6, 7))
    vkey = app.test_cli_runner().invoke(args=["audit", "public-key", "--vkey"]).output.strip()
    trusted = _checkpoint_file(app, tmp_path, 5)
    result = app.test_cli_runner().invoke(args=["audit", "consistency", "5"])
    assert result.exit_code == 0 and result.output.startswith("old 5\n")
    proof = tmp_path / "consistency.txt"
    proof.write_text(result.output)
    done = run_offline(
        "consistency", str(proof), "--trusted-checkpoint", str(trusted), "--vkey", vkey
    )
    assert done.returncode == 0, done.stderr
    assert "extends it" in done.stdout
    between = app.test_cli_runner().invoke(args=["audit", "consistency", "5", "11"])
    assert between.exit_code == 0 and "\n11\n" in between.output
    # One proof hash changed: refused.
    lines = result.output.split("\n")
    lines[1] = base64.b64encode(bytes(32)).decode()
    proof.write_text("\n".join(lines))
    done = run_offline(
        "consistency", str(proof), "--trusted-checkpoint", str(trusted), "--vkey", vkey
    )
    assert done.returncode == 1 and "fork" in done.stderr
    for bad in (["99"], ["5", "7"], ["12", "11"]):
        out = app.test_cli_runner().invoke(args=["audit", "consistency", *bad])
        assert out.exit_code == 1 and "Error" in out.output


def test_truncated_export_fails_offline_given_a_later_trusted_checkpoint(app, tmp_path):
    build_log(app, (5, 5, 5))
    vkey = app.test_cli_runner().invoke(args=["audit", "public-key", "--vkey"]).output.strip()
    trusted = _checkpoint_file(app, tmp_path, 15)
    out = tmp_path / "export.jsonl"
    app.test_cli_runner().invoke(args=["audit", "export", "-o", str(out)])
    lines = out.read_text().splitlines(keepends=True)
    cut = [i for i, line in enumerate(lines) if '"checkpoint"' in line][1]
    truncated = tmp_path / "truncated.jsonl"
    truncated.write_text("".join(lines[: cut + 1]))  # ends at the checkpoint of 10 events
    alone = run_offline("export", str(truncated), "--vkey", vkey)
    assert alone.returncode == 0, alone.stderr  # intact on its own...
    done = run_offline(
        "export", str(truncated), "--vkey", vkey, "--trusted-checkpoint", str(trusted)
    )
    assert done.returncode == 1 and "tail_missing" in done.stderr  # ...but shorter than trusted
    full = run_offline("export", str(out), "--vkey", vkey, "--trusted-checkpoint", str(trusted))
    assert full.returncode == 0, full.stderr
    # An export starting after the trusted size needs (and checks) a consistency proof.
    early = _checkpoint_file(app, tmp_path, 5)
    since = tmp_path / "since.jsonl"
    app.test_cli_runner().invoke(args=["audit", "export", "--since", "12", "-o", str(since)])
    done = run_offline("export", str(since), "--vkey", vkey, "--trusted-checkpoint", str(early))
    assert done.returncode == 1 and "no consistency proof" in done.stderr
    app.test_cli_runner().invoke(
        args=["audit", "export", "--since", "12", "--consistency-from", "5", "-o", str(since)]
    )
    done = run_offline("export", str(since), "--vkey", vkey, "--trusted-checkpoint", str(early))
    assert done.returncode == 0, done.stderr


# --------------------------------------------------------------------------- fork protection


def test_fork_is_refused_until_recovered(app, tmp_path, caplog):
    build_log(app, (10, 10))
    backup = tmp_path / "before.jsonl"
    app.test_cli_runner().invoke(args=["audit", "export", "-o", str(backup)])
    anchor = Path(app.instance_path, "audit_anchor.jsonl")
    anchored = anchor.read_text()
    rewind_to(app, 10)
    add_events(app, 5, start=100)
    with caplog.at_level(logging.CRITICAL, logger="app.audit.log"):
        result = app.test_cli_runner().invoke(args=["audit", "checkpoint"])
    assert result.exit_code == 1 and "REFUSED" in result.output
    assert "database is behind" in result.output
    assert any(r.levelno == logging.CRITICAL and "HALTED" in r.getMessage() for r in caplog.records)
    # Nothing was signed or anchored; the new events wait, unsealed.
    assert anchor.read_text() == anchored
    assert scalar(app, "SELECT count(*) FROM audit_checkpoint") == 1
    assert scalar(app, "SELECT count(*) FROM audit_event WHERE seq IS NULL") == 5
    # It keeps refusing, even with the anchor out of reach, until an operator acts.
    anchor.rename(tmp_path / "away")
    again = app.test_cli_runner().invoke(args=["audit", "checkpoint"])
    assert again.exit_code == 1 and "REFUSED" in again.output
    (tmp_path / "away").rename(anchor)
    with app.app_context():
        state = service.status(app)
    assert state.ok is False and "halted" in state.reason
    checked = verify(app)
    assert checked.exit_code == 1 and "rolled_back" in checked.output
    assert "HALTED" in checked.output
    # Recovery without the lost events is refused; with the earlier export it works.
    refused = app.test_cli_runner().invoke(args=["audit", "recover"])
    assert refused.exit_code == 1 and "behind" in refused.output
    done = app.test_cli_runner().invoke(args=["audit", "recover", "--export", str(backup)])
    assert done.exit_code == 0, done.output
    assert "10 events and 1 checkpoints re-imported" in done.output
    with app.app_context():
        assert service.status(app).ok
    signed = app.test_cli_runner().invoke(args=["audit", "checkpoint"])
    assert signed.exit_code == 0 and "sealed 5 events; checkpoint 2: 25 events" in signed.output
    final = verify(app)
    assert final.exit_code == 0, final.output
    assert "WARNING" not in final.output


def test_diverging_tree_of_the_same_size_is_refused(app):
    """Rewound and refilled to beyond the anchored size: same index and size, other root."""
    build_log(app, (4, 4))
    rewind_to(app, 4)
    add_events(app, 6, start=50)
    result = app.test_cli_runner().invoke(args=["audit", "checkpoint"])
    assert result.exit_code == 1 and "REFUSED" in result.output
    assert scalar(app, "SELECT count(*) FROM audit_checkpoint") == 1


# --------------------------------------------------------------------------- public endpoints


def test_public_checkpoint_is_cacheable_and_needs_no_login(app, client):
    assert client.get("/audit/checkpoint").status_code == 404
    build_log(app, (3,))
    resp = client.get("/audit/checkpoint")
    assert resp.status_code == 200
    assert resp.headers["Cache-Control"].startswith("public, max-age=")
    etag = resp.headers["ETag"]
    again = client.get("/audit/checkpoint", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""


def test_public_consistency_and_inclusion_reveal_only_hashes(app, client):
    build_log(app, (6, 6))
    with app.app_context():
        keys = service.settings().trusted
    resp = client.get("/audit/consistency?old=6&new=12")
    assert resp.status_code == 200 and resp.headers["Cache-Control"].startswith("public")
    old_cp = client.get("/audit/consistency?old=0&new=6").get_data(as_text=True).split("\n\n", 1)[1]
    trusted = core.parse_signed_checkpoint(old_cp, keys)
    assert core.verify_consistency_text(resp.get_data(as_text=True), keys, trusted).ok
    leaf = bytes(scalar(app, "SELECT leaf_hash FROM audit_event WHERE seq = 7"))
    proof = client.get(f"/audit/inclusion?leaf={leaf.hex()}")
    body = proof.get_data(as_text=True)
    assert proof.status_code == 200 and "\nextra " not in body and "user:" not in body
    assert core.verify_proof_text(body, keys, leaf).ok
    assert not core.verify_proof_text(body, keys, bytes(32)).ok
    for url, status in (
        ("/audit/consistency", 400),
        ("/audit/consistency?old=abc", 400),
        ("/audit/consistency?old=-1", 400),
        ("/audit/consistency?old=01", 400),
        ("/audit/consistency?old=1%00", 400),
        ("/audit/consistency?old=13", 404),
        ("/audit/consistency?old=1&new=99", 404),
        ("/audit/consistency?old=1&new=" + "9" * 40, 400),
        ("/audit/consistency?old=1&new=" + "9" * 19, 400),
        ("/audit/consistency?old=1&new=" + "9" * 20, 400),
        ("/audit/consistency?old=1&new=9223372036854775808", 400),
        ("/audit/consistency?old=1&new=9223372036854775807", 404),
        ("/audit/consistency?old=9223372036854775807", 404),
        ("/audit/consistency?old=12&new=6", 400),
        ("/audit/inclusion?leaf=zz", 400),
        ("/audit/inclusion?leaf=" + "00" * 32, 404),
    ):
        got = client.get(url)
        assert got.status_code == status, (url, got.status_code)
        assert got.headers["Cache-Control"] == "no-store"


# --------------------------------------------------------------------------- retention


def _old_events(app, n: int, days_ago: int, start: int = 0) -> None:
    with app.app_context():
        for i in range(start, start + n):
            trail.record(
                db.session,
                "key.created",
                actor=f"user:{i}",
                actor_ip="192.0.2.1",
                target=f"key:k{i}",
                at=datetime.now(UTC) - timedelta(days=days_ago),
            )
        db.session.commit()


def test_prune_drops_old_payloads_and_every_proof_still_holds(app, client, tmp_path):
    _old_events(app, 6, 400)
    seal(app)
    _old_events(app, 5, 1, start=6)
    seal(app)
    with app.app_context():
        keys = service.settings().trusted
    before = client.get("/audit/consistency?old=0&new=6").get_data(as_text=True)
    old_leaf = bytes(scalar(app, "SELECT leaf_hash FROM audit_event WHERE seq = 2"))
    cutoff = (datetime.now(UTC) - timedelta(days=30)).date().isoformat()
    result = app.test_cli_runner().invoke(args=["audit", "prune", "--before", cutoff, "--yes"])
    assert result.exit_code == 0 and "pruned the payloads of 6 events" in result.output
    assert scalar(app, "SELECT count(*) FROM audit_event WHERE canonical IS NULL") == 6
    assert scalar(app, "SELECT count(*) FROM audit_event WHERE actor_ip = '192.0.2.1'") == 5
    seal(app)  # the audit.pruned event
    checked = verify(app)
    assert checked.exit_code == 0, checked.output
    # Proofs: inclusion of a pruned event by its leaf hash, of a kept one with bytes,
    # and consistency across the pruned range.
    proof = client.get(f"/audit/inclusion?leaf={old_leaf.hex()}").get_data(as_text=True)
    assert core.verify_proof_text(proof, keys, old_leaf).ok
    with app.app_context(), db.engine.connect() as conn:
        kept = auditlog.inclusion_proof(conn, 8)
        assert core.verify_proof_text(kept["text"], keys).ok
        pruned = auditlog.inclusion_proof(conn, 2)
        assert "\nextra " not in pruned["text"]
    now = client.get("/audit/consistency?old=6").get_data(as_text=True)
    trusted = core.parse_signed_checkpoint(before.split("\n\n", 1)[1], keys)
    assert core.verify_consistency_text(now, keys, trusted).ok
    out = tmp_path / "export.jsonl"
    app.test_cli_runner().invoke(args=["audit", "export", "-o", str(out)])
    assert out.read_text().count('"type": "leaf"') == 6
    vkey = app.test_cli_runner().invoke(args=["audit", "public-key", "--vkey"]).output.strip()
    done = run_offline("export", str(out), "--vkey", vkey)
    assert done.returncode == 0, done.stderr
    # Pruning twice changes nothing; a bad date is a clear error.
    again = app.test_cli_runner().invoke(args=["audit", "prune", "--before", cutoff, "--yes"])
    assert "of 0 events" in again.output
    bad = app.test_cli_runner().invoke(args=["audit", "prune", "--before", "yesterday"])
    assert bad.exit_code == 2 and "not an ISO date" in bad.output


# --------------------------------------------------------------------------- monitoring


def test_verify_warns_on_a_stale_checkpoint_and_a_lagging_anchor(app):
    build_log(app, (3, 3))
    assert "WARNING" not in verify(app).output
    anchor = Path(app.instance_path, "audit_anchor.jsonl")
    entries = anchor.read_text()
    first = entries[: entries.index("\n\n", entries.index("\u2014")) + 2]
    anchor.write_text(first)
    result = verify(app)
    assert result.exit_code == 0
    assert "WARNING: the anchor lags the database" in result.output
    anchor.write_text(entries)
    app.config["AUDIT_CHECKPOINT_INTERVAL"] = 0.01
    app.extensions[service.EXTENSION] = service.AuditService(app)
    import time

    time.sleep(0.05)
    result = verify(app)
    assert result.exit_code == 0
    assert "WARNING: the newest checkpoint is" in result.output


def test_the_app_never_imports_the_command_line_file():
    import subprocess
    import sys

    code = (
        "import sys, app.audit.cli, app.audit.verify, app.transparency.routes, app.audit.witness\n"
        "print('app.audit.core.offline' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr
