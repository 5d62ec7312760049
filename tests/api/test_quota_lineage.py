"""Quotas that follow the key (issue 22): a rotated key's successor inherits what its
lineage used this month, so rotating neither resets nor multiplies the monthly quota,
and an optional account quota caps all of an owner's keys together. Through the test
client, on SQLite + memory:// and PostgreSQL + Redis alike."""

from __future__ import annotations

import time
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from support.keys import Key, Keys

from app import ratelimit
from app.limiter import limiter_of

KEYS = "/api/v1/keys"
VALIDATE = "/api/v1/keys/validate"


def _validate(client: FlaskClient, plaintext: str) -> Any:
    return client.post(VALIDATE, headers={"Authorization": f"Bearer {plaintext}"})


def _rotate(client: FlaskClient, manager: Key, public_id: str, grace: str = "1h") -> str:
    resp = client.post(f"{KEYS}/{public_id}/rotate", headers=manager.bearer, json={"grace": grace})
    assert resp.status_code == 201, resp.json
    return resp.json["key"]


def test_rotating_a_key_neither_resets_nor_multiplies_its_quota(
    app: Flask, client: FlaskClient, keys: Keys
) -> None:
    """A 5-a-month plan: 3 used, then two rotations; the chain together gets 5, not 15
    (before: each successor started at 0, and the old key kept its own during grace)."""
    app.config["MONTHLY_QUOTAS"] = {"basic": 5}
    first = keys.key(name="svc")
    manager = keys.key(name="manager")  # its own lineage: its calls spend its own quota
    assert [_validate(client, first.plaintext).status_code for _ in range(3)] == [200] * 3
    second = _rotate(client, manager, first.public_id)
    answer = _validate(client, second)
    assert answer.status_code == 200
    assert answer.json["quota"]["remaining"] == 1  # 4 of 5: the first key's 3 came along
    third = _rotate(client, manager, second.split(".")[1])
    assert _validate(client, third).json["quota"]["remaining"] == 0  # 5 of 5
    # Spent for the whole chain: the successor, and the old keys still in their grace.
    for plaintext in (third, second, first.plaintext):
        over = _validate(client, plaintext)
        assert (over.status_code, over.json["error"]) == (429, "quota_exceeded")
    # A key of another lineage keeps its own quota (the manager used 2 calls of 5).
    assert _validate(client, manager.plaintext).json["quota"]["remaining"] == 2


def test_the_account_quota_caps_all_its_keys_together(
    app: Flask, client: FlaskClient, keys: Keys
) -> None:
    """ACCOUNT_MONTHLY_QUOTAS: new keys do not multiply the plan's month."""
    app.config["ACCOUNT_MONTHLY_QUOTAS"] = {"basic": 4}
    one, two = keys.key(name="one"), keys.key(name="two")
    assert [_validate(client, one.plaintext).status_code for _ in range(3)] == [200] * 3
    last = _validate(client, two.plaintext)
    assert last.status_code == 200
    assert last.json["quota"]["limit"] == 4 and last.json["quota"]["remaining"] == 0
    # A key made now starts on the account's spent month, not a fresh one.
    three = keys.key(name="three")
    for key in (one, two, three):
        over = _validate(client, key.plaintext)
        assert (over.status_code, over.json["error"]) == (429, "quota_exceeded")
    # Another account is not touched; nor is a tier the setting does not name.
    other = keys.key(email="other@example.com")
    assert _validate(client, other.plaintext).json["quota"]["remaining"] == 3
    premium = keys.key(email="p@example.com", tier="premium")
    assert _validate(client, premium.plaintext).json["quota"] is None


def test_the_quota_with_less_left_binds_and_is_shown(
    app: Flask, client: FlaskClient, keys: Keys
) -> None:
    """Both quotas set: each key is held to its lineage's, and all of them to the
    account's; a request one refuses spends neither."""
    app.config["MONTHLY_QUOTAS"] = {"basic": 3}
    app.config["ACCOUNT_MONTHLY_QUOTAS"] = {"basic": 5}
    one, two = keys.key(name="one"), keys.key(name="two")
    shown = [_validate(client, one.plaintext).json["quota"] for _ in range(3)]
    assert [(q["limit"], q["remaining"]) for q in shown] == [(3, 2), (3, 1), (3, 0)]
    assert _validate(client, one.plaintext).json["error"] == "quota_exceeded"
    # The account has 2 left, the second key's lineage 3: the account's is shown.
    answer = _validate(client, two.plaintext).json["quota"]
    assert (answer["limit"], answer["remaining"]) == (5, 1)
    assert _validate(client, two.plaintext).status_code == 200
    assert _validate(client, two.plaintext).json["error"] == "quota_exceeded"
    # The refusals spent nothing: the counters hold exactly what was answered 200.
    month, _ = ratelimit.quota_period(time.time())
    head = f"LIMITER/{app.config['RATELIMIT_KEY_PREFIX']}"
    storage = limiter_of(app).storage
    with app.app_context():
        assert storage.get(f"{head}/{one.public_id}/monthly-quota/{month}") == 3
        assert storage.get(f"{head}/{two.public_id}/monthly-quota/{month}") == 2
        assert storage.get(f"{head}/account-{one.owner_id}/monthly-quota/{month}") == 5
