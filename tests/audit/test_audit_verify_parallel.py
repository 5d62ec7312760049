"""Verify with worker processes (what big logs get) must reach the same verdict as the
one-process check: the same root for an intact log, the same first damage otherwise."""

from __future__ import annotations

import logging

import pytest
from audit_helpers import build_log, tamper

from app.audit import service
from app.audit.verify import verify_log
from app.extensions import db

FALLBACK = "rechecking in one process"


def both(app, caplog):
    """(one-process report, two-worker report) on tiny chunks, so several are in flight."""
    with app.app_context():
        settings = service.settings(app)
        single = verify_log(db.engine, settings, workers=0)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="app.audit.verify"):
            parallel = verify_log(db.engine, settings, workers=2, chunk=3)
    return single, parallel


def test_intact_log_same_root_without_falling_back(app, caplog):
    build_log(app, (10, 7, 13))
    single, parallel = both(app, caplog)
    assert single.ok and parallel.ok, (single.summary(), parallel.summary())
    assert (parallel.events, parallel.checkpoints, parallel.root) == (30, 3, single.root)
    assert FALLBACK not in caplog.text
    assert "parallel audit verify failed" not in caplog.text


@pytest.mark.parametrize(
    ("sql", "kind", "seq"),
    [
        ("UPDATE audit_event SET actor = 'user:999' WHERE seq = 7", "field_changed", 7),
        ("DELETE FROM audit_event WHERE seq = 11", "event_missing", 11),
        (
            ("UPDATE audit_event SET leaf_hash = :h WHERE seq = 25", {"h": bytes(32)}),
            "bytes_changed",
            25,
        ),
    ],
)
def test_damage_named_as_in_one_process(app, caplog, sql, kind, seq):
    build_log(app, (10, 7, 13))
    tamper(app, sql)
    single, parallel = both(app, caplog)
    assert not parallel.ok
    assert parallel.damage is not None and single.damage is not None
    assert (parallel.damage.kind, parallel.damage.seq) == (kind, seq)
    assert parallel.summary() == single.summary()
