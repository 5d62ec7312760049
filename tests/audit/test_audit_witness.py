"""A witness run in another process (`flask audit witness`): it cosigns the log's
checkpoints (C2SP tlog-cosignature v1) only when they are consistent with the last it
saw; the log stores the cosignatures, publishes and shows them, and the offline
verifier can require them."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from audit_helpers import add_events, build_log, rewind_to, run_offline, scalar, seal, tamper
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from app.audit import core, service
from app.audit.anchor import Anchor
from app.extensions import db

ROOT = Path(__file__).resolve().parents[2]
NAME = "witness.example/w1"


def _flask(tmp: Path, *args: str, **kw):
    env = {
        **os.environ,
        "KEYLEDGER_INSTANCE": str(tmp / "witness-instance"),
        "SECRET_KEY": "witness-test",
        "KEY_PEPPER": "witness-test",
        "DATABASE_URL": f"sqlite:///{tmp / 'witness-unused.db'}",
    }
    flask = str(Path(sys.executable).with_name("flask"))
    return subprocess.Popen(
        [flask, "--app", "app", "audit", "witness", *args],
        cwd=str(ROOT),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


@pytest.fixture
def witness(app, tmp_path):
    """(url, vkey, state file) of a witness process following this app's log."""
    with app.app_context():
        log_vkey = service.settings().signer.vkey
    common = ["--name", NAME, "--key", str(tmp_path / "w.pem"), "--state", str(tmp_path / "w.json")]
    printed = _flask(tmp_path, *common, "--print-vkey")
    out, err = printed.communicate(timeout=60)
    assert printed.returncode == 0, err
    vkey = out.strip()
    proc = _flask(tmp_path, *common, "--log-vkey", log_vkey)
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(proc.stderr.readline()), daemon=True)
    reader.start()
    reader.join(60)
    assert line and "listening on http://" in line[0], line
    url = line[0].split("listening on ")[1].strip()
    app.config["AUDIT_WITNESSES"] = f"{url} {vkey}"
    app.extensions[service.EXTENSION] = service.AuditService(app)
    yield url, vkey, tmp_path / "w.json"
    proc.terminate()
    proc.wait(10)


def spec_cosignature_ok(note: str, vkey: str) -> bool:
    """tlog-cosignature v1, from the spec: key id with type 0x04, signed message
    `cosignature/v1\\ntime T\\n` + the checkpoint text, signature = u64 time || sig."""
    name, kid, material = vkey.split("+", 2)
    raw = base64.b64decode(material)
    assert raw[0] == 0x04
    assert hashlib.sha256(name.encode() + b"\n\x04" + raw[1:]).digest()[:4].hex() == kid
    cut = note.rindex("\n\n")
    body = note[: cut + 1].encode()
    for line in note[cut + 2 :].splitlines():
        sig_name, b64 = line[2:].split(" ")
        sig = base64.b64decode(b64)
        if sig_name == name and sig[:4].hex() == kid:
            timestamp = int.from_bytes(sig[4:12], "big")
            message = b"cosignature/v1\ntime %d\n" % timestamp + body
            Ed25519PublicKey.from_public_bytes(raw[1:]).verify(sig[12:], message)
            return True
    return False


def _post(url: str, body: str) -> tuple[int, str, str]:
    req = urllib.request.Request(url + "/add-checkpoint", data=body.encode(), method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def test_witness_in_another_process_cosigns_only_consistent_checkpoints(
    app, client, admin, witness, tmp_path
):
    url, vkey, state = witness
    build_log(app, (5,))
    assert scalar(app, "SELECT count(*) FROM audit_cosignature") == 1
    note = client.get("/audit/checkpoint").get_data(as_text=True)
    assert f"\n\u2014 {NAME} " in note and spec_cosignature_ok(note, vkey)
    add_events(app, 3, start=5)
    seal(app)  # the witness gets `old N` and a consistency proof N -> N + 3
    size = scalar(app, "SELECT size FROM audit_state")
    assert scalar(app, "SELECT count(*) FROM audit_cosignature") == 2
    assert f'"size": {size}' in state.read_text()
    note = client.get("/audit/checkpoint").get_data(as_text=True)
    assert spec_cosignature_ok(note, vkey)
    # The admin view shows who cosigned.
    assert NAME in admin.client.get("/admin/audit").get_data(as_text=True)
    # Offline, N cosignatures can be required.
    out = tmp_path / "export.jsonl"
    app.test_cli_runner().invoke(args=["audit", "export", "-o", str(out)])
    with app.app_context():
        log_vkey = service.settings().signer.vkey
    done = run_offline(
        "export", str(out), "--vkey", log_vkey, "--witness", vkey, "--min-witnesses", "1"
    )
    assert done.returncode == 0, done.stderr
    done = run_offline(
        "export", str(out), "--vkey", log_vkey, "--witness", vkey, "--min-witnesses", "2"
    )
    assert done.returncode == 1 and "witnesses_missing" in done.stderr
    # A checkpoint that does not extend what the witness saw is refused (422), even
    # though the log's key signed it; a stale old size gets 409 and the witness's size.
    with app.app_context():
        signer = service.settings().signer
        with db.engine.connect() as conn:
            from app.audit import log as auditlog

            latest = auditlog.latest_checkpoint(conn)
    forked_note = core.format_note(
        "keyledger/audit", size + 1, bytes(32), latest.index + 1, latest.time, latest.digest
    )
    forked = core.load_checkpoint(forked_note, signer.sign(forked_note), signer.key_id)
    status, _, body = _post(url, core.format_consistency_proof(size, [bytes(32)], forked))
    assert status == 422, body
    status, ctype, body = _post(url, core.format_consistency_proof(3, [bytes(32)], forked))
    assert (status, ctype, body) == (409, "text/x.tlog.size", f"{size}\n")
    status, _, body = _post(url, "old 0\n\nnot a note\n")
    assert status == 400
    assert f'"size": {size}' in state.read_text()
    # The log keeps being cosigned after the refusals.
    add_events(app, 2, start=8)
    seal(app)
    assert scalar(app, "SELECT count(*) FROM audit_cosignature") == 3
    assert verify_ok(app)


def verify_ok(app) -> bool:
    result = app.test_cli_runner().invoke(args=["audit", "verify"])
    return result.exit_code == 0


def test_cosignatures_are_held_outside_the_database_and_guard_the_sealer(
    app, client, witness, tmp_path
):
    """A witness's cosignature goes to the anchor too: a database restored from a
    backup taken before it was cosigned cannot make the sealer sign a fork, and
    `recover` puts lost cosignature rows back from the anchor."""
    _url, vkey, state = witness
    anchor = Path(app.instance_path, "audit_anchor.jsonl")
    build_log(app, (4,))
    backup_size = scalar(app, "SELECT size FROM audit_state")
    backup = tmp_path / "backup.jsonl"
    app.test_cli_runner().invoke(args=["audit", "export", "-o", str(backup)])
    add_events(app, 3, start=50)
    seal(app)
    cosigned_size = scalar(app, "SELECT size FROM audit_state")
    assert scalar(app, "SELECT count(*) FROM audit_cosignature") == 2
    newest = Anchor(anchor).newest()
    assert newest is not None and newest.tree_size == cosigned_size
    assert [s.name for s in newest.cosignatures] == [NAME]
    assert spec_cosignature_ok(newest.signed_note(), vkey)
    assert verify_ok(app)

    # Cosignature rows lost from the database: verify says so, recover restores them.
    tamper(app, "DELETE FROM audit_cosignature")
    checked = app.test_cli_runner().invoke(args=["audit", "verify"])
    assert "2 witness cosignatures in the anchor are missing from the database" in checked.output
    done = app.test_cli_runner().invoke(args=["audit", "recover"])
    assert done.exit_code == 0 and "2 witness cosignatures restored" in done.output, done.output
    assert scalar(app, "SELECT count(*) FROM audit_cosignature") == 2
    checked = app.test_cli_runner().invoke(args=["audit", "verify"])
    assert checked.exit_code == 0 and "WARNING" not in checked.output, checked.output

    # Restore the backup taken before the witness saw the newer checkpoint, let new
    # events arrive: the sealer refuses, and the witness is never asked.
    witnessed = state.read_text()
    rewind_to(app, backup_size)
    tamper(app, "DELETE FROM audit_cosignature WHERE checkpoint_idx > 0")
    add_events(app, 5, start=80)
    result = app.test_cli_runner().invoke(args=["audit", "checkpoint"])
    assert result.exit_code == 1 and "REFUSED" in result.output
    assert "database is behind" in result.output
    assert state.read_text() == witnessed
    assert (
        scalar(app, "SELECT count(*) FROM audit_checkpoint WHERE tree_size > :n", n=backup_size)
        == 0
    )


def test_the_anchors_newest_entry_is_the_highest_index_and_its_cosigned_copy(app, tmp_path):
    """Witnesses can answer after the sealer has signed the next checkpoint, so the
    cosigned copy of one checkpoint may follow a later checkpoint in the anchor."""
    from app.audit import log as auditlog

    build_log(app, (3, 2))
    with app.app_context(), db.engine.connect() as conn:
        first, second = auditlog.checkpoint_at(conn, 3), auditlog.checkpoint_at(conn, 5)
    assert first is not None and second is not None and first.index < second.index
    witness_key = Ed25519PrivateKey.generate()
    sig = core.cosign(first.note, NAME, witness_key, 1_700_000_000)
    cosigned = first.with_cosignatures([sig])
    anchor = Anchor(tmp_path / "anchor.txt")
    for cp in (first, second, cosigned):
        anchor.append(cp)
    newest = anchor.newest()
    assert (newest.index, newest.cosignatures) == (second.index, ())
    anchor.append(second.with_cosignatures([core.cosign(second.note, NAME, witness_key, 1)]))
    newest = anchor.newest()
    assert newest.index == second.index and [s.name for s in newest.cosignatures] == [NAME]
