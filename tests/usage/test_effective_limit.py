"""One effective limit per key (app/ratelimit.py `effective_limit`): what validation
charges is what every page shows, and the busiest minute counts what the limit
admitted."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta

from flask import Flask
from support.usage import Key
from support.web import Portal

from app.usage import recorder

VALIDATE = "/api/v1/keys/validate"


def _text(portal: Portal, url: str) -> str:
    resp = portal.client.get(url)
    assert resp.status_code == 200
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", resp.get_data(as_text=True))).split())


def test_a_keys_own_limit_is_the_one_every_page_shows(
    app: Flask, user: Portal, admin: Portal, key: Key
) -> None:
    assert (
        admin.submit(f"/admin/keys/{key.public_id}/limit", {"rate_limit": "10"}).status_code == 302
    )
    answered = app.test_client().post(VALIDATE, json={"key": key.plaintext})
    assert answered.headers["X-RateLimit-Limit"] == "10"

    page = _text(user, f"/keys/{key.public_id}")
    assert "60 a minute" not in page  # the basic tier's
    assert "Limit 10 a minute (set by an administrator)" in page  # the usage section
    assert "Rate limit 10 a minute (set by an administrator)" in page  # the policies
    usage = user.client.get(f"/keys/{key.public_id}/usage.json").get_json()
    assert usage["peak"]["limit"] == 10
    assert "10 a minute (set by an administrator)" in _text(
        admin, f"/admin/keys/{key.public_id}/limit"
    )


def test_the_tier_limit_is_named_as_such(app: Flask, user: Portal, key: Key) -> None:
    answered = app.test_client().post(VALIDATE, json={"key": key.plaintext})
    assert answered.headers["X-RateLimit-Limit"] == "60"
    assert "Limit 60 a minute (basic tier)" in _text(user, f"/keys/{key.public_id}")


def test_the_busiest_minute_counts_admitted_requests_not_refused_ones(
    app: Flask, user: Portal, key: Key
) -> None:
    minute = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=5)
    rec = recorder(app)
    for i in range(60):  # the basic tier's whole minute, then eight refusals
        rec.record(key.event(at=minute + timedelta(seconds=i // 2)))
    for i in range(8):
        rec.record(key.event(status=429, at=minute + timedelta(seconds=40 + i)))
    rec.record(key.event(at=minute + timedelta(minutes=2)))
    rec.flush()

    peak = user.client.get(f"/keys/{key.public_id}/usage.json?range=hour").get_json()["peak"]
    assert peak["at"] == minute.isoformat().replace("+00:00", "Z")
    assert (peak["count"], peak["refused"], peak["limit"]) == (60, 8, 60)
    assert peak["share"] == 1.0  # not 68 / 60, 113 %
