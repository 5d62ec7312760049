"""Appending, sealing, checkpoints, the anchor, signing keys and the PostgreSQL trigger."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest
from audit_helpers import USE_PG, add_events, build_log, scalar, seal, verify
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from support.servers import PATIENCE

from app.audit import core, service, trail
from app.audit import log as auditlog
from app.audit.anchor import read_anchor
from app.extensions import db


def test_record_only_inserts_and_keeps_the_callers_transaction(app):
    with app.app_context():
        event = trail.record(db.session, "user.login", actor="user:1", actor_ip="192.0.2.1")
        assert event.seq is None and event.id is not None
        db.session.rollback()
    assert scalar(app, "SELECT count(*) FROM audit_event") == 0
    add_events(app, 3)
    assert scalar(app, "SELECT count(*) FROM audit_event WHERE seq IS NULL") == 3
    assert scalar(app, "SELECT count(*) FROM audit_checkpoint") == 0


def test_record_refuses_bad_values_and_floats(app):
    with app.app_context():
        for kwargs in (
            {"sensitivity": "extreme"},
            {"outcome": "maybe"},
            {"details": {"ratio": 0.5}},
        ):
            with pytest.raises((ValueError, TypeError)):
                trail.record(db.session, "user.login", actor="user:1", **kwargs)
        db.session.rollback()
    assert scalar(app, "SELECT count(*) FROM audit_event") == 0


def test_checkpoint_command_seals_everything_and_anchors_it(app):
    add_events(app, 7)
    result = app.test_cli_runner().invoke(args=["audit", "checkpoint"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("sealed 7 events; checkpoint 0: 7 events, root ")
    assert scalar(app, "SELECT count(*) FROM audit_event WHERE seq IS NULL") == 0
    # A second checkpoint now, even with nothing new, chained to the first.
    again = app.test_cli_runner().invoke(args=["audit", "checkpoint"])
    assert "sealed 0 events; checkpoint 1: 7 events" in again.output
    # The anchor holds each checkpoint as a C2SP signed note and a blank line.
    text = Path(app.instance_path, "audit_anchor.jsonl").read_text()
    entries = text.split("\n\n\u2014")
    assert len(entries) == 3 and text.endswith("\n\n")
    cps = [c for _, c in read_anchor(Path(app.instance_path, "audit_anchor.jsonl"))]
    assert [c.index for c in cps] == [0, 1]
    assert cps[1].prev == cps[0].digest and cps[0].prev == core.ZERO_HASH
    assert text.startswith(cps[0].signed_note() + "\n")
    assert verify(app).exit_code == 0


def test_sequence_numbers_follow_arrival_and_batches_stay_contiguous(app):
    with app.app_context():
        settings = dataclasses.replace(service.settings(), batch=4)
        add_events(app, 10)
        assert auditlog.seal(db.engine, settings).sealed == 4
        assert auditlog.seal_all(db.engine, settings) == 6
        with db.engine.connect() as conn:
            rows = conn.execute(text("SELECT id, seq FROM audit_event ORDER BY id")).all()
            sizes = conn.execute(
                text("SELECT tree_size FROM audit_checkpoint ORDER BY idx")
            ).scalars()
            assert [r.seq for r in rows] == list(range(10))
            assert list(sizes) == [4, 8, 10]


def test_a_checkpoint_is_signed_when_the_interval_passes_without_events(app):
    build_log(app, (3,))
    with app.app_context():
        settings = service.settings()
        assert auditlog.seal(db.engine, settings).checkpoint is None
        quick = dataclasses.replace(settings, checkpoint_interval=0)
        cp = auditlog.seal(db.engine, quick).checkpoint
        assert cp is not None and cp.tree_size == 3 and cp.index == 1


def test_background_sealer_seals_while_the_app_serves(app, client):
    sealer = app.extensions[service.EXTENSION].sealer
    assert sealer.enabled is False  # off by default under TESTING
    sealer.enabled = True
    sealer.interval = 0.1
    try:
        client.get("/login")  # the first request starts it, lazily
        add_events(app, 5)
        deadline = time.monotonic() + PATIENCE
        while scalar(app, "SELECT count(*) FROM audit_event WHERE seq IS NULL") and (
            time.monotonic() < deadline
        ):
            time.sleep(0.05)
        assert scalar(app, "SELECT count(*) FROM audit_event WHERE seq IS NULL") == 0
        assert scalar(app, "SELECT max(tree_size) FROM audit_checkpoint") >= 5
    finally:
        sealer.stop()
    assert verify(app).exit_code == 0


def test_public_key_command_prints_the_key_and_its_id(app):
    result = app.test_cli_runner().invoke(args=["audit", "public-key"])
    assert result.exit_code == 0
    keys = core.load_public_keys(result.output)
    with app.app_context():
        signer = service.settings().signer
    assert [core.raw_public_key(k) for k in keys] == [core.raw_public_key(signer.public)]
    assert f"# key id {signer.key_id} " in result.output and "(current)" in result.output
    vkey = app.test_cli_runner().invoke(args=["audit", "public-key", "--vkey"])
    assert vkey.exit_code == 0 and vkey.output == signer.vkey + "\n"
    parsed = core.parse_vkey(vkey.output)
    assert parsed.name == "keyledger/audit" and parsed.key_id.hex() == signer.key_id


def _pem(key: Ed25519PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _use_key(app, pem: str, trusted: str | None) -> None:
    app.config["AUDIT_SIGNING_KEY"] = pem
    app.config["AUDIT_TRUSTED_KEYS"] = trusted
    app.extensions[service.EXTENSION] = service.AuditService(app)


def test_key_rotation_keeps_old_checkpoints_verifiable(app, tmp_path):
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    _use_key(app, _pem(old), None)
    build_log(app, (4,))
    old_public = tmp_path / "old.pem"
    old_public.write_text(core.public_key_pem(old.public_key()))
    _use_key(app, _pem(new), str(old_public))
    add_events(app, 2, start=4)
    seal(app)
    result = verify(app)
    assert result.exit_code == 0, result.output
    shown = app.test_cli_runner().invoke(args=["audit", "public-key", "--all"])
    assert core.note_key_id("keyledger/audit", old.public_key()).hex() in shown.output
    # Forget the old key and its checkpoints can no longer be trusted.
    _use_key(app, _pem(new), "")
    result = verify(app)
    assert result.exit_code == 1 and "unknown_key" in result.output


def test_a_bad_signing_key_is_refused_at_start(app):
    from app.audit.signing import SigningKeyError

    app.config["AUDIT_SIGNING_KEY"] = "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----"
    with pytest.raises(SigningKeyError):
        service.AuditService(app)


def test_export_goes_to_stdout_as_json_lines(app):
    build_log(app, (2,))
    result = app.test_cli_runner().invoke(args=["audit", "export"])
    assert result.exit_code == 0
    kinds = [json.loads(line)["type"] for line in result.output.splitlines()]
    assert kinds == ["header", "event", "event", "checkpoint"]
    header = json.loads(result.output.splitlines()[0])
    assert header["public_keys"][0].startswith("keyledger/audit+")


@pytest.mark.skipif(not USE_PG, reason="the append-only trigger exists on PostgreSQL only")
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_event SET actor = 'x' WHERE seq = 0",
        "UPDATE audit_event SET seq = 5 WHERE seq = 0",
        "DELETE FROM audit_event WHERE seq = 0",
        "UPDATE audit_checkpoint SET tree_size = 0",
        "DELETE FROM audit_checkpoint",
        "UPDATE audit_node SET hash = hash",
        "DELETE FROM audit_node",
    ],
)
def test_postgres_trigger_rejects_update_and_delete(app, statement):
    build_log(app, (300,))
    with (
        app.app_context(),
        pytest.raises(DBAPIError, match="append-only"),
        db.engine.begin() as conn,
    ):
        conn.execute(text(statement))
    assert verify(app).exit_code == 0


@pytest.mark.skipif(not USE_PG, reason="the append-only trigger exists on PostgreSQL only")
def test_postgres_trigger_lets_the_sealer_fill_in_seq_only(app):
    add_events(app, 2)
    with (
        app.app_context(),
        pytest.raises(DBAPIError, match="append-only"),
        db.engine.begin() as conn,
    ):
        conn.execute(text("UPDATE audit_event SET seq = 0, actor = 'x' WHERE seq IS NULL"))
    assert seal(app) == 2
