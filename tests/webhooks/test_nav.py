"""The webhook pages are their own nav item, not "API keys" (issue 18)."""

from __future__ import annotations

import re

from sqlalchemy import select

from app.extensions import db
from app.models import WebhookEndpoint


def _current(page: str) -> list[str]:
    return re.findall(r'<a href="[^"]*" aria-current="page">([^<]+)</a>', page)


def test_webhook_pages_mark_webhooks_as_current(app, user, receiver):
    resp = user.submit("/account/webhooks", {"url": receiver.url, "events": ["key.revoked"]})
    assert resp.status_code == 200
    with app.app_context():
        pid = db.session.scalar(select(WebhookEndpoint.public_id))
    for path in ("/account/webhooks", f"/account/webhooks/{pid}"):
        page = user.client.get(path).get_data(as_text=True)
        assert _current(page) == ["Webhooks"], path
    assert _current(user.client.get("/keys").get_data(as_text=True)) == ["API keys"]


def test_the_endpoint_page_title_is_only_its_title(app, user, receiver):
    user.submit("/account/webhooks", {"url": receiver.url, "events": ["key.revoked"]})
    with app.app_context():
        pid = db.session.scalar(select(WebhookEndpoint.public_id))
    page = user.client.get(f"/account/webhooks/{pid}").get_data(as_text=True)
    title = re.search(r"<title>(.*?)</title>", page, re.S).group(1)
    assert "<" not in title and "Webhook endpoint" in title
