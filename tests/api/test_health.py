"""/healthz and /readyz as a load balancer sees them: JSON, 503 naming what is broken."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import text
from support.servers import free_port

from app.audit import log as auditlog
from app.audit import service, trail
from app.extensions import db
from app.models._types import utcnow
from app.observability.health import register_check

TOKEN = "operator-token"
OPERATOR = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(autouse=True)
def _operator_token(app: Flask) -> None:
    app.config["METRICS_TOKEN"] = TOKEN


def _seal(app: Flask) -> None:
    with app.app_context():
        auditlog.seal_all(db.engine, service.settings(app), force_checkpoint=True)


def _event(app: Flask, **fields: Any) -> None:
    with app.app_context():
        trail.record(db.session, "key.created", actor="user:1", target="key:k", **fields)
        db.session.commit()


def test_healthz_answers_without_any_backing_service(make_app: Any, tmp_path: Path) -> None:
    broken = make_app(
        METRICS_TOKEN=TOKEN,
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'missing' / 'x.db'}",
        RATELIMIT_STORAGE_URI=f"redis://127.0.0.1:{free_port()}/0",
    )
    resp = broken.test_client().get("/healthz")
    assert resp.status_code == 200
    assert resp.json == {"status": "ok"}


def test_readyz_is_ready_with_every_check_named(app: Flask) -> None:
    _event(app)
    _seal(app)
    resp = app.test_client().get("/readyz", headers=OPERATOR)
    assert resp.status_code == 200, resp.json
    assert resp.json["status"] == "ready"
    assert set(resp.json["checks"]) == {"database", "limit_storage", "audit_sealer", "audit_anchor"}
    assert all(c["ok"] for c in resp.json["checks"].values())
    assert resp.json["checks"]["audit_anchor"]["detail"].endswith("matches")


def test_readyz_names_an_unreachable_database(make_app: Any, tmp_path: Path) -> None:
    down = make_app(
        METRICS_TOKEN=TOKEN, SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'missing' / 'x.db'}"
    )
    resp = down.test_client().get("/readyz", headers=OPERATOR)
    assert resp.status_code == 503
    assert resp.mimetype == "application/json"
    assert "database" in resp.json["failing"]
    assert resp.json["checks"]["limit_storage"]["ok"] is True
    assert "OperationalError" in resp.json["checks"]["database"]["error"]


def test_readyz_names_an_unreachable_limit_storage(make_app: Any) -> None:
    down = make_app(METRICS_TOKEN=TOKEN, RATELIMIT_STORAGE_URI=f"redis://127.0.0.1:{free_port()}/0")
    resp = down.test_client().get("/readyz", headers=OPERATOR)
    assert resp.status_code == 503
    assert resp.json["failing"] == ["limit_storage"]


def test_readyz_fails_when_audit_events_wait_too_long(app: Flask) -> None:
    _event(app, at=utcnow() - timedelta(minutes=5))
    resp = app.test_client().get("/readyz", headers=OPERATOR)
    assert resp.status_code == 503
    assert resp.json["failing"] == ["audit_sealer"]
    assert "1 audit events unsealed" in resp.json["checks"]["audit_sealer"]["error"]
    _seal(app)
    assert app.test_client().get("/readyz", headers=OPERATOR).status_code == 200


def test_readyz_fails_when_the_database_lost_anchored_checkpoints(app: Flask) -> None:
    """A database restored from an older copy: the anchor holds a newer checkpoint."""
    _event(app)
    _seal(app)
    _event(app)
    _seal(app)
    with app.app_context(), db.engine.begin() as conn:
        newest = conn.execute(text("SELECT MAX(idx) FROM audit_checkpoint")).scalar()
        if conn.dialect.name == "postgresql":
            conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(text("DELETE FROM audit_checkpoint WHERE idx = :i"), {"i": newest})
    resp = app.test_client().get("/readyz", headers=OPERATOR)
    assert resp.status_code == 503
    assert resp.json["failing"] == ["audit_anchor"]
    assert "missing from the database" in resp.json["checks"]["audit_anchor"]["error"]


def test_readyz_fails_on_an_anchor_line_that_is_not_a_checkpoint(app: Flask) -> None:
    _event(app)
    _seal(app)
    anchor = service.settings(app).anchor.path
    with anchor.open("a") as fh:
        fh.write(json.dumps({"type": "checkpoint", "note": "x", "signature": "!"}) + "\n")
    resp = app.test_client().get("/readyz", headers=OPERATOR)
    assert resp.status_code == 503
    assert resp.json["failing"] == ["audit_anchor"]


def test_one_more_check_is_one_line(app: Flask) -> None:
    def webhooks() -> str:
        raise RuntimeError("webhook queue stuck")

    register_check(app, "webhooks", webhooks)
    resp = app.test_client().get("/readyz", headers=OPERATOR)
    assert resp.status_code == 503
    assert resp.json["failing"] == ["webhooks"]
    assert "webhook queue stuck" in resp.json["checks"]["webhooks"]["error"]


def test_readyz_tells_anonymous_callers_only_ready_or_not(make_app: Any, tmp_path: Path) -> None:
    """ASVS 14.3.3: a load balancer needs the status; error texts (driver names, paths,
    versions) are for the operator holding the metrics token, and the log."""
    resp = make_app(METRICS_TOKEN=TOKEN).test_client().get("/readyz")
    assert resp.status_code == 200 and resp.json == {"status": "ready"}
    down = make_app(
        METRICS_TOKEN=TOKEN, SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'missing' / 'x.db'}"
    )
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        resp = down.test_client().get("/readyz", headers=headers)
        assert resp.status_code == 503 and resp.json == {"status": "unready"}
    # No token configured: nobody gets the details over HTTP.
    resp = make_app().test_client().get("/readyz", headers=OPERATOR)
    assert resp.json == {"status": "ready"}
