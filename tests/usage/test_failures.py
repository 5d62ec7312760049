"""A database outage keeps the batch for the next flush; a bad item cannot block the rest."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from flask import Flask
from support.db import USE_PG, base_config
from support.rows import audit_events, count_rows
from support.usage import Key

from app import create_app
from app.extensions import db
from app.usage import recorder
from app.usage.batch import BatchRecorder


@pytest.mark.skipif(USE_PG, reason="moves a SQLite file into place to end the outage")
def test_an_outage_keeps_events_until_the_database_is_back(
    app: Flask, key: Key, tmp_path: Path
) -> None:
    recorder(app).flush()
    missing_dir = tmp_path / "not-yet"
    url = f"sqlite:///{missing_dir / 'keyledger.db'}"
    down = create_app(base_config(tmp_path / "down", url))
    rec = BatchRecorder(down, mode="manual")
    for _ in range(7):
        rec.record(key.event())
    rec.audit("key.validated", actor=f"key:{key.public_id}")

    rec.flush()  # the file cannot be opened: nothing lost, nothing raised
    assert rec.pending() == 8

    missing_dir.mkdir()
    source = app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///")
    with app.app_context():  # WAL: fold committed pages into the file before copying it
        db.session.remove()
        with db.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    shutil.copyfile(source, missing_dir / "keyledger.db")
    rec.flush()
    assert rec.pending() == 0
    assert count_rows(down, "usage_event") == 7
    assert len(audit_events(down, "key.validated")) == 1


def test_an_audit_event_the_trail_refuses_does_not_block_the_batch(app: Flask, key: Key) -> None:
    rec = recorder(app)
    rec.record(key.event())
    rec.audit("key.validated", actor=f"key:{key.public_id}", sensitivity="nonsense")
    rec.audit("key.validated", actor=f"key:{key.public_id}", actor_ip="198.51.100.1")
    rec.record(key.event())
    rec.flush()
    assert rec.pending() == 0
    assert count_rows(app, "usage_event") == 2
    kept = audit_events(app, "key.validated")
    assert [e.actor_ip for e in kept] == ["198.51.100.1"]


def test_an_event_for_a_key_that_does_not_exist_is_dropped_alone(app: Flask, key: Key) -> None:
    from dataclasses import replace

    rec = recorder(app)
    rec.record(key.event())
    rec.record(replace(key.event(), key_id=key.id + 10_000))
    rec.record(key.event())
    rec.flush()
    assert rec.pending() == 0
    assert count_rows(app, "usage_event") == 2
