"""A key's own rate limit set by its owner (issue 18): at or below the tier's, through
the portal and the JSON API; above it is refused with a clear error and changes nothing;
an admin's limit still wins; a downgrade lowers an owner's limit with the tier."""

from __future__ import annotations

import re
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from support.keys import Keys
from support.web import Portal, public_id_of

from app import accounts
from app.extensions import db
from app.models import ApiKey, User

URL = "/api/v1/keys/validate"


def _row(app: Flask, public_id: str) -> ApiKey:
    with app.app_context():
        return db.session.scalar(select(ApiKey).where(ApiKey.public_id == public_id))


def _codes(client: FlaskClient, plaintext: str, n: int) -> list[int]:
    return [client.post(URL, json={"key": plaintext}).status_code for _ in range(n)]


def test_the_owner_lowers_a_keys_limit_on_the_key_page(app: Flask, user: Portal) -> None:
    _, plaintext = user.create_key("script")
    pid = public_id_of(plaintext)
    page = f"/keys/{pid}"
    resp = user.submit(
        page, {"ip_allowlist": "", "meta": "", "rate_limit": "3"}, f"{page}/policies"
    )
    assert resp.status_code == 302
    html = user.client.get(page).get_data(as_text=True)
    assert "3 a minute (this key&#39;s own limit; the basic tier allows 60)" in html
    client = app.test_client()
    assert _codes(client, plaintext, 4) == [200, 200, 200, 429]
    assert client.post(URL, json={"key": plaintext}).headers["X-RateLimit-Limit"] == "3"

    # Above the tier's: refused beside the field, what was typed kept, nothing changed.
    resp = user.submit(
        page, {"ip_allowlist": "", "meta": "", "rate_limit": "61"}, f"{page}/policies"
    )
    assert resp.status_code == 400
    html = resp.get_data(as_text=True)
    error = re.search(r'id="rate_limit-error">(.*?)</ul>', html, re.S)
    assert error and "at most 60 a minute, the basic tier" in error.group(1)
    assert 'value="61"' in html
    for bad in ("0", "-1", "2.5", "lots"):
        resp = user.submit(
            page, {"ip_allowlist": "", "meta": "", "rate_limit": bad}, f"{page}/policies"
        )
        assert resp.status_code == 400, bad
    assert _row(app, pid).owner_rate_limit == 3
    # A good allowlist beside a refused limit: neither is saved, both stay typed, and
    # only the limit is marked and focused.
    resp = user.submit(
        page, {"ip_allowlist": "198.51.100.7", "meta": "", "rate_limit": "600"}, f"{page}/policies"
    )
    assert resp.status_code == 400
    html = resp.get_data(as_text=True)
    field = re.search(r'<input id="rate_limit"[^>]*>', html)[0]
    assert 'value="600"' in field and 'aria-invalid="true"' in field and "autofocus" in field
    assert html.count(" autofocus") == 1 and "198.51.100.7</textarea>" in html
    assert _row(app, pid).ip_allowlist is None and _row(app, pid).owner_rate_limit == 3
    # Empty: the tier's again.
    user.submit(page, {"ip_allowlist": "", "meta": "", "rate_limit": ""}, f"{page}/policies")
    assert _row(app, pid).owner_rate_limit is None


def _patch(client: FlaskClient, key: Any, body: Any) -> Any:
    return client.patch(f"/api/v1/keys/{key.public_id}/policies", headers=key.bearer, json=body)


def test_the_api_sets_the_owners_limit_and_refuses_above_the_tier(
    app: Flask, client: FlaskClient, keys: Keys
) -> None:
    key = keys.key(tier="premium")  # 300 a minute
    ok = _patch(client, key, {"owner_rate_limit": 250, "meta": {"a": 1}})
    assert ok.status_code == 200, ok.get_data(as_text=True)
    assert ok.json["owner_rate_limit"] == 250 and ok.json["changed"] is True
    for bad in (301, 0, "50", 1.5, True):
        resp = _patch(client, key, {"owner_rate_limit": bad, "meta": {"b": 2}})
        assert resp.status_code == 400, bad
        assert "owner_rate_limit" in resp.json["message"] or "rate limit" in resp.json["message"]
    over = _patch(client, key, {"owner_rate_limit": 301})
    assert "at most 300 a minute, the premium tier" in over.json["message"]
    row = _row(app, key.public_id)
    assert (row.owner_rate_limit, row.meta) == (250, {"a": 1})  # nothing changed
    assert client.post(URL, headers=key.bearer).headers["X-RateLimit-Limit"] == "250"

    # A downgrade to basic (60) lowers it with the tier: never above the tier's.
    with app.app_context():
        owner = db.session.get(User, key.owner_id)
        accounts.set_tier(db.session, owner, "basic", actor="cli")
    assert client.post(URL, headers=key.bearer).headers["X-RateLimit-Limit"] == "60"
    assert _patch(client, key, {"owner_rate_limit": None}).json["owner_rate_limit"] is None


def test_an_admins_limit_wins_over_the_owners(
    app: Flask, client: FlaskClient, keys: Keys, admin: Portal
) -> None:
    key = keys.key()
    assert _patch(client, key, {"owner_rate_limit": 10}).status_code == 200
    assert (
        admin.submit(f"/admin/keys/{key.public_id}/limit", {"rate_limit": "4"}).status_code == 302
    )
    assert client.post(URL, headers=key.bearer).headers["X-RateLimit-Limit"] == "4"
    admin.submit(f"/admin/keys/{key.public_id}/limit", {"rate_limit": ""})
    assert client.post(URL, headers=key.bearer).headers["X-RateLimit-Limit"] == "10"
