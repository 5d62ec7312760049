"""`flask audit verify` against every kind of damage the issue names: each test breaks
the log the way an attacker with database access would, and checks that verify exits
non-zero naming the kind and the first bad sequence number."""

from __future__ import annotations

import base64
import hashlib
import shutil
from pathlib import Path

import pytest
from audit_helpers import USE_PG, add_events, build_log, scalar, seal, tamper, verify
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.audit import core, trail


def damaged(result, kind: str, seq: int | None) -> str:
    assert result.exit_code == 1, result.output
    assert f": {kind}: " in result.output, result.output
    if seq is not None:
        assert f"DAMAGED at seq {seq}:" in result.output, result.output
    return result.output


def test_intact_log_verifies_with_a_one_line_summary(app):
    build_log(app)
    result = verify(app)
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("audit trail intact: 20 events, 2 checkpoints, root ")
    assert "verified in" in lines[0]


def test_changed_field(app):
    build_log(app)
    tamper(app, "UPDATE audit_event SET actor = 'user:999' WHERE seq = 7")
    out = damaged(verify(app), "field_changed", 7)
    assert "column actor" in out


@pytest.mark.parametrize("column", ["action", "sensitivity", "outcome", "actor_ip", "target"])
def test_every_browsable_column_is_checked(app, column):
    build_log(app)
    value = "critical" if column == "sensitivity" else "denied" if column == "outcome" else "x"
    tamper(app, (f"UPDATE audit_event SET {column} = :v WHERE seq = 12", {"v": value}))
    out = damaged(verify(app), "field_changed", 12)
    assert f"column {column}" in out


def test_changed_details_column(app):
    build_log(app)
    tamper(app, ("UPDATE audit_event SET details = :d WHERE seq = 4", {"d": '{"n":3}'}))
    assert "column details" in damaged(verify(app), "field_changed", 4)


def test_changed_created_at_column(app):
    build_log(app)
    with app.app_context():
        from app.extensions import db
        from app.models import AuditEvent

        event = db.session.query(AuditEvent).filter_by(seq=9).one()
        tamper(
            app,
            (
                "UPDATE audit_event SET created_at = :t WHERE seq = 9",
                {
                    "t": event.created_at.replace(year=2001)
                    if USE_PG
                    else event.created_at.strftime("2001-%m-%d %H:%M:%S.%f")
                },
            ),
        )
    assert "column created_at" in damaged(verify(app), "field_changed", 9)


def test_changed_canonical_byte(app):
    build_log(app)
    raw = bytes(scalar(app, "SELECT canonical FROM audit_event WHERE seq = 3"))
    flipped = raw.replace(b'"n":3', b'"n":4')
    assert flipped != raw
    tamper(app, ("UPDATE audit_event SET canonical = :c WHERE seq = 3", {"c": flipped}))
    damaged(verify(app), "bytes_changed", 3)


def test_changed_bytes_with_recomputed_leaf_hash_breaks_the_signed_root(app):
    build_log(app)
    raw = bytes(scalar(app, "SELECT canonical FROM audit_event WHERE seq = 13"))
    forged = raw.replace(b'"n":13', b'"n":31')
    tamper(
        app,
        (
            "UPDATE audit_event SET canonical = :c, leaf_hash = :l, details = :d WHERE seq = 13",
            {"c": forged, "l": core.leaf_hash(forged), "d": '{"n":31,"name":"ci ✓"}'},
        ),
    )
    out = damaged(verify(app), "root_mismatch", 10)
    assert "events 10..19" in out


def test_deleted_middle_event(app):
    build_log(app)
    tamper(app, "DELETE FROM audit_event WHERE seq = 5")
    assert "event 5 is missing" in damaged(verify(app), "event_missing", 5)


def test_deleted_tail_behind_a_checkpoint(app):
    build_log(app)
    tamper(app, "DELETE FROM audit_event WHERE seq >= 17")
    out = damaged(verify(app), "tail_missing", 17)
    assert "events 17..19 were deleted" in out


def test_deleted_tail_with_state_rewound_is_still_caught(app):
    build_log(app)
    tamper(
        app,
        "DELETE FROM audit_event WHERE seq >= 10",
        "DELETE FROM audit_node",
        ("UPDATE audit_state SET size = 10", {}),
    )
    damaged(verify(app), "tail_missing", 10)


def test_reordered_events(app):
    build_log(app)
    tamper(
        app,
        "UPDATE audit_event SET seq = -1 WHERE seq = 3",
        "UPDATE audit_event SET seq = 3 WHERE seq = 4",
        "UPDATE audit_event SET seq = 4 WHERE seq = -1",
    )
    out = damaged(verify(app), "root_mismatch", 0)
    assert "events 0..9" in out and "reordered" in out


def _forged_row(n: int) -> dict:
    event = trail.build("user.login", actor="user:1", actor_ip="198.51.100.1", target="user:1")
    return {
        "seq": n,
        "event_id": event.event_id,
        # Stored the way SQLAlchemy stores it, as a careful attacker would.
        "created_at": event.created_at
        if USE_PG
        else event.created_at.strftime("%Y-%m-%d %H:%M:%S.%f"),
        "action": event.action,
        "sensitivity": event.sensitivity,
        "actor": event.actor,
        "actor_ip": event.actor_ip,
        "target": event.target,
        "outcome": event.outcome,
        "details": event.details,
        "canonical": event.canonical,
        "leaf_hash": event.leaf_hash,
    }


INSERT = (
    "INSERT INTO audit_event (seq, event_id, created_at, action, sensitivity, actor, "
    "actor_ip, target, outcome, details, canonical, leaf_hash) VALUES (:seq, :event_id, "
    ":created_at, :action, :sensitivity, :actor, :actor_ip, :target, :outcome, :details, "
    ":canonical, :leaf_hash)"
)


def test_inserted_event_after_the_last_checkpoint(app):
    build_log(app)
    tamper(app, (INSERT, _forged_row(20)))
    out = damaged(verify(app), "event_uncovered", 20)
    assert "not covered by any signed checkpoint" in out


def test_inserted_event_in_the_middle(app):
    build_log(app)
    tamper(
        app,
        "UPDATE audit_event SET seq = seq + 1000 WHERE seq >= 15",
        "UPDATE audit_event SET seq = seq - 999 WHERE seq >= 1015",
        (INSERT, _forged_row(15)),
    )
    damaged(verify(app), "root_mismatch", 10)


def _rewrite_everything(app, sign) -> None:
    """Change event 2, recompute its leaf, and re-sign every checkpoint over the new
    tree with `sign(note) -> (key_id, signature)`."""
    raw = bytes(scalar(app, "SELECT canonical FROM audit_event WHERE seq = 2"))
    forged = raw.replace(b'"actor":"user:2"', b'"actor":"user:0"')
    tamper(
        app,
        (
            "UPDATE audit_event SET canonical = :c, leaf_hash = :l, actor = 'user:0' WHERE seq = 2",
            {"c": forged, "l": core.leaf_hash(forged)},
        ),
    )
    with app.app_context():
        from sqlalchemy import text

        from app.extensions import db

        with db.engine.connect() as conn:
            leaves = [
                bytes(r[0])
                for r in conn.execute(text("SELECT leaf_hash FROM audit_event ORDER BY seq"))
            ]
            rows = conn.execute(text("SELECT idx, note FROM audit_checkpoint ORDER BY idx")).all()
    prev = core.ZERO_HASH
    statements = []
    for idx, note in rows:
        cp = core.checkpoints._parse_note(bytes(note))
        root = core.mth(leaves[: cp[1]])
        kid, _ = sign(b"")
        new_note = core.format_note(cp[0], cp[1], root, idx, cp[4], prev)
        prev = hashlib.sha256(new_note).digest()
        _, sig = sign(new_note)
        statements.append(
            (
                "UPDATE audit_checkpoint SET note = :n, signature = :s, root_hash = :r, "
                "key_id = :k WHERE idx = :i",
                {"n": new_note, "s": sig, "r": root, "k": kid, "i": idx},
            )
        )
    f = core.Frontier()
    for leaf in leaves:
        f.append(leaf)
    statements.append(
        ("UPDATE audit_state SET root = :r, frontier = :f", {"r": f.root(), "f": f.to_bytes()})
    )
    statements.append("DELETE FROM audit_node")
    tamper(app, *statements)


def test_rewritten_trail_with_recomputed_hashes_fails_on_the_signature(app):
    build_log(app)
    with app.app_context():
        from app.audit import service

        real_kid = service.settings().signer.key_id
    attacker = Ed25519PrivateKey.generate()
    _rewrite_everything(app, lambda note: (real_kid, attacker.sign(note)))
    out = damaged(verify(app), "bad_signature", None)
    assert "checkpoint 0 has an invalid signature" in out


def test_rewritten_trail_signed_with_another_key_is_refused(app):
    build_log(app)
    attacker = Ed25519PrivateKey.generate()
    kid = core.note_key_id("keyledger/audit", attacker.public_key()).hex()
    _rewrite_everything(app, lambda note: (kid, attacker.sign(note)))
    out = damaged(verify(app), "unknown_key", None)
    assert kid in out


def test_deleted_middle_checkpoint(app):
    build_log(app, (5, 5, 5))
    tamper(app, "DELETE FROM audit_checkpoint WHERE idx = 1")
    out = damaged(verify(app), "checkpoint_missing", None)
    assert "checkpoint 1 is missing" in out


def test_deleted_newest_checkpoint_is_caught_by_the_anchor(app):
    build_log(app, (5, 5, 5))
    tamper(app, "DELETE FROM audit_checkpoint WHERE idx = 2")
    # Without its checkpoint the last batch is uncovered; with them gone too, only the
    # anchor can tell.
    damaged(verify(app), "event_uncovered", 10)
    tamper(
        app,
        "DELETE FROM audit_event WHERE seq >= 10",
        "DELETE FROM audit_node",
    )
    f = core.Frontier()
    for (leaf,) in _leaves(app):
        f.append(bytes(leaf))
    tamper(
        app,
        (
            "UPDATE audit_state SET size = :s, root = :r, frontier = :f",
            {"s": f.size, "r": f.root(), "f": f.to_bytes()},
        ),
    )
    out = damaged(verify(app), "rolled_back", 10)
    assert "anchor holds checkpoint 2" in out
    # The database alone still looks consistent: only the anchor caught it.
    assert verify(app, "--anchor", str(app.instance_path) + "/none.jsonl").exit_code == 0


def _leaves(app):
    with app.app_context():
        from sqlalchemy import text

        from app.extensions import db

        with db.engine.connect() as conn:
            return conn.execute(text("SELECT leaf_hash FROM audit_event ORDER BY seq")).all()


@pytest.mark.skipif(USE_PG, reason="restores the SQLite database file from an older copy")
def test_database_restored_to_an_older_copy_is_caught_by_the_anchor(app, tmp_path):
    build_log(app, (10,))
    db_file = app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///")
    with app.app_context():
        from app.extensions import db

        db.engine.dispose()
    shutil.copyfile(db_file, tmp_path / "backup.db")
    add_events(app, 5, start=10)
    seal(app)
    assert verify(app).exit_code == 0
    with app.app_context():
        db.engine.dispose()
    shutil.copyfile(tmp_path / "backup.db", db_file)
    out = damaged(verify(app), "rolled_back", 10)
    assert "restored from an older copy" in out


@pytest.mark.skipif(not USE_PG, reason="PostgreSQL restore simulated with pg_dump-free SQL")
def test_postgres_rolled_back_to_an_older_state_is_caught_by_the_anchor(app):
    build_log(app, (10,))
    state = (
        scalar(app, "SELECT size FROM audit_state"),
        bytes(scalar(app, "SELECT root FROM audit_state")),
        bytes(scalar(app, "SELECT frontier FROM audit_state")),
    )
    add_events(app, 5, start=10)
    seal(app)
    tamper(
        app,
        "DELETE FROM audit_event WHERE seq >= 10",
        "DELETE FROM audit_checkpoint WHERE idx >= 1",
        (
            "UPDATE audit_state SET size = :s, root = :r, frontier = :f",
            {"s": state[0], "r": state[1], "f": state[2]},
        ),
    )
    damaged(verify(app), "rolled_back", 10)


def test_changed_checkpoint_column_is_caught(app):
    build_log(app)
    tamper(app, "UPDATE audit_checkpoint SET tree_size = 3 WHERE idx = 0")
    assert "columns differ from its signed note" in damaged(verify(app), "field_changed", 10)


def test_garbage_checkpoint_note_is_reported_not_crashed(app):
    build_log(app)
    tamper(app, ("UPDATE audit_checkpoint SET note = :n WHERE idx = 1", {"n": b"\xff\x00junk"}))
    assert "checkpoint 1" in damaged(verify(app), "malformed", None)


def test_tampered_anchor_line_is_reported(app):
    build_log(app)
    path = app.instance_path + "/audit_anchor.jsonl"
    before = Path(path).read_text().count("\n")
    with open(path, "a") as fh:
        note = base64.b64encode(b"x" * 64).decode()
        fh.write('{"type":"checkpoint","note":"nope","signature":"' + note + '"}\n')
    assert f"anchor line {before + 1}:" in damaged(verify(app), "anchor_invalid", None)


def test_anchor_note_with_a_forged_signature_is_reported(app):
    build_log(app)
    path = Path(app.instance_path) / "audit_anchor.jsonl"
    text = path.read_text()
    first = text[: text.index("\n\n", text.index("\u2014")) + 2]
    lines = first.split("\n")
    lines[1] = "21"  # claim a bigger tree under the old signature
    path.write_text(text + "\n".join(lines))
    assert "invalid signature" in damaged(verify(app), "anchor_invalid", None)


def test_unsealed_events_are_reported_but_not_damage(app):
    build_log(app)
    add_events(app, 3, start=20)
    result = verify(app)
    assert result.exit_code == 0, result.output
    assert "3 events waiting to be sealed" in result.output


def test_details_that_mimic_top_level_keys_still_verify(app):
    add_events(app, 1, details={"x": {"a": 1, "event_id": "fake", "outcome": "denied"}})
    seal(app)
    result = verify(app)
    assert result.exit_code == 0, result.output
    tamper(app, "UPDATE audit_event SET outcome = 'denied' WHERE seq = 0")
    damaged(verify(app), "field_changed", 0)
