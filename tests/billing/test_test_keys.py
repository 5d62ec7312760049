"""Test keys (issue 18): a key made for testing has its own visible prefix, validates
like any other, is marked in the validation answer and on the pages, and is never
billed (its use is still recorded)."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime

from flask import Flask
from sqlalchemy import select, text
from support.web import Portal

from app.extensions import db
from app.keys import format as keyformat
from app.models import ApiKey
from app.usage import recorder
from tests.billing.test_snapshot import _admin

URL = "/api/v1/keys/validate"


def _create(portal: Portal, name: str, *, test: bool) -> str:
    data = {"name": name, "scopes": ["keys:read", "keys:write"], "lifetime_days": 30}
    if test:
        data["test"] = "y"
    resp = portal.submit("/keys/new", data)
    m = re.search(r'id="new-key"[^>]*value="([^"]+)"', resp.get_data(as_text=True))
    assert m, resp.get_data(as_text=True)
    return m.group(1)


def test_a_test_key_has_its_prefix_validates_and_says_so(app: Flask, user: Portal) -> None:
    live = _create(user, "live", test=False)
    test = _create(user, "sandbox", test=True)
    assert live.startswith("klk.") and test.startswith("klktest.")
    client = app.test_client()
    answers = {}
    for name, key in (("live", live), ("test", test)):
        resp = client.post(URL, json={"key": key, "scopes": ["keys:read"]})
        assert resp.status_code == 200, resp.get_data(as_text=True)
        answers[name] = resp.get_json()
    assert answers["test"]["valid"] is True and answers["test"]["test"] is True
    assert answers["live"]["test"] is False
    assert "X-RateLimit-Limit" in client.post(URL, json={"key": test}).headers

    pid = test.split(".")[1]
    keys_page = user.client.get("/keys").get_data(as_text=True)
    assert keys_page.count("data-test-key") == 1
    assert f"klktest.{pid}" in keys_page
    key_page = user.client.get(f"/keys/{pid}").get_data(as_text=True)
    assert "data-test-key" in key_page and "never billed" in key_page
    live_page = user.client.get(f"/keys/{live.split('.')[1]}").get_data(as_text=True)
    assert "data-test-key" not in live_page
    admin_keys = _admin(app).client.get("/admin/keys").get_data(as_text=True)
    assert admin_keys.count("data-test-key") == 1


def test_a_key_with_the_other_prefix_is_no_key(app: Flask, user: Portal) -> None:
    """The checksum does not bind the prefix to the secret: a live key rewritten with
    the test prefix (or the reverse) must not validate as the same key."""
    client = app.test_client()
    for made_test, other in ((False, "klktest"), (True, "klk")):
        key = _create(user, f"k-{other}", test=made_test)
        _, pid, rest = key.split(".")
        forged = keyformat.assemble(other, pid, rest[: keyformat.SECRET_LEN])
        resp = client.post(URL, json={"key": forged})
        assert resp.status_code == 401
        assert resp.get_json()["error"] == "invalid_key"
        assert client.post(URL, json={"key": key}).status_code == 200


def test_a_test_keys_use_is_recorded_and_never_billed(app: Flask, user: Portal) -> None:
    live = _create(user, "live", test=False)
    test = _create(user, "sandbox", test=True)
    client = app.test_client()
    for _ in range(3):
        assert client.post(URL, json={"key": live}).status_code == 200
    for _ in range(5):
        assert client.post(URL, json={"key": test}).status_code == 200
    recorder(app).flush()
    test_pid = test.split(".")[1]
    with app.app_context():
        test_id = db.session.scalar(select(ApiKey.id).where(ApiKey.public_id == test_pid))
        recorded = db.session.execute(
            text("SELECT SUM(count) FROM usage_rollup WHERE granularity = 'hour' AND key_id = :k"),
            {"k": test_id},
        ).scalar_one()
    assert recorded == 5  # counted in usage ...

    page = user.client.get("/billing").get_data(as_text=True)
    assert "data-billing-billable>3<" in page  # ... but not billed
    assert test_pid not in page
    rows = list(
        csv.DictReader(io.StringIO(user.client.get("/billing/export.csv").get_data(as_text=True)))
    )
    assert [r["key_name"] for r in rows if r["line"] == "key"] == ["live"]
    month = datetime.now(UTC).strftime("%Y-%m")
    admin = _admin(app)
    body = json.loads(
        admin.client.get(f"/admin/billing/export.json?month={month}").get_data(as_text=True)
    )
    assert body["totals"]["billable"] == 3
    events = admin.client.get(f"/admin/billing/export.cloudevents?month={month}")
    assert test_pid not in events.get_data(as_text=True)


def test_the_api_makes_test_keys_and_rotation_keeps_them(app: Flask, user: Portal) -> None:
    manager = _create(user, "manager", test=False)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {manager}"}
    resp = client.post("/api/v1/keys", json={"name": "ci", "test": True}, headers=headers)
    assert resp.status_code == 201, resp.get_data(as_text=True)
    made = resp.get_json()
    assert made["key"].startswith("klktest.") and made["test"] is True
    bad = client.post("/api/v1/keys", json={"name": "ci", "test": "yes"}, headers=headers)
    assert bad.status_code == 400 and '"test"' in bad.get_json()["message"]
    rotated = client.post(
        f"/api/v1/keys/{made['key_id']}/rotate", json={"grace": "now"}, headers=headers
    )
    assert rotated.status_code in (200, 201), rotated.get_data(as_text=True)
    assert rotated.get_json()["key"].startswith("klktest.")
    assert rotated.get_json()["test"] is True
