"""Validation through the real endpoint is recorded when the batch flushes, not before."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Flask
from sqlalchemy import select
from support.rows import audit_events, count_rows, written_audit
from support.usage import Key
from support.web import Portal

from app.extensions import db
from app.models import ApiKey, UsageRecord, UsageRollup
from app.usage import recorder
from app.usage.queries import floor


def validate(app: Flask, body: dict, **headers: str):
    return app.test_client().post(
        "/api/v1/keys/validate",
        json=body,
        headers=headers,
        environ_base={"REMOTE_ADDR": "192.0.2.44"},
    )


def test_a_validation_is_recorded_with_rollups_last_use_and_audit(app: Flask, key: Key) -> None:
    recorder(app).flush()
    before_audit = written_audit(app, "key.validated")
    started = datetime.now(UTC)
    resp = validate(
        app, {"key": key.plaintext, "request": {"method": "POST", "path": "/v1/orders"}}
    )
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.get_json()["valid"] is True

    # The answer went out before anything was written.
    assert count_rows(app, "usage_event") == 0
    assert written_audit(app, "key.validated") == before_audit
    recorder(app).flush()

    with app.app_context():
        event = db.session.scalars(select(UsageRecord)).one()
        assert (event.key_id, event.owner_id) == (key.id, key.owner_id)
        assert (event.endpoint, event.method, event.status) == ("/v1/orders", "POST", 200)
        assert event.client_ip == "192.0.2.44"
        assert event.response_ms >= 0
        assert event.at >= started.replace(microsecond=0)
        minute = db.session.get(UsageRollup, (key.id, "minute", floor(event.at, "minute")))
        assert (minute.count, minute.status_2xx) == (1, 1)
        hour = db.session.get(UsageRollup, (key.id, "hour", floor(event.at, "hour")))
        assert hour.count == 1
        stored = db.session.get(ApiKey, key.id)
        assert stored.last_used_at == event.at
        assert stored.last_used_ip == "192.0.2.44"
    validated = audit_events(app, "key.validated", target=f"key:{key.public_id}")
    assert len(validated) == 1
    assert validated[0].actor_ip == "192.0.2.44"


def test_without_a_reported_request_the_endpoint_is_ours(app: Flask, key: Key) -> None:
    resp = validate(app, {}, **{"X-API-Key": key.plaintext})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    recorder(app).flush()
    with app.app_context():
        event = db.session.scalars(select(UsageRecord)).one()
        assert event.endpoint.endswith("/keys/validate")


def test_many_validations_are_counted_once_each(app: Flask, key: Key) -> None:
    for _ in range(25):
        assert validate(app, {"key": key.plaintext}).status_code == 200
    recorder(app).flush()
    assert count_rows(app, "usage_event") == 25
    with app.app_context():
        rows = db.session.scalars(
            select(UsageRollup).where(UsageRollup.granularity == "hour")
        ).all()
        assert sum(r.count for r in rows) == 25


def test_a_failed_validation_is_audited_on_the_batch_but_not_billed(app: Flask, key: Key) -> None:
    wrong = key.plaintext[:-6] + ("A" if key.plaintext[-6] != "A" else "B") + key.plaintext[-5:]
    before = len(audit_events(app, "key.validation_failed"))
    resp = validate(app, {"key": "not a key"})
    assert resp.status_code in (400, 401)
    recorder(app).flush()
    assert len(audit_events(app, "key.validation_failed")) == before + 1
    resp = validate(app, {"key": wrong})
    assert resp.status_code == 401
    recorder(app).flush()
    assert count_rows(app, "usage_event") == 0  # nobody to bill for a key that did not hold


def test_the_owner_sees_real_validations_on_the_chart(app: Flask, user: Portal, key: Key) -> None:
    for _ in range(3):
        assert validate(app, {"key": key.plaintext}).status_code == 200
    recorder(app).flush()
    data = user.client.get(f"/keys/{key.public_id}/usage.json?range=hour").get_json()
    assert data["total"]["count"] == 3
    assert data["total"]["outcome"]["2xx"] == 3
    page = user.client.get(f"/keys/{key.public_id}").get_data(as_text=True)
    assert "192.0.2.44" in page  # last used from
