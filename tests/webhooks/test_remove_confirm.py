"""Removing a webhook endpoint asks for a ticked box, as revoking a key does (issue 18):
without it nothing changes and the owner is told why, on the endpoint's page."""

from __future__ import annotations

import re

from sqlalchemy import select
from support.rows import audit_events

from app.extensions import db
from app.models import WebhookEndpoint


def _endpoint(user, app, url: str) -> str:
    resp = user.submit("/account/webhooks", {"url": url, "events": ["key.revoked"]})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    with app.app_context():
        return db.session.scalar(select(WebhookEndpoint.public_id))


def _removed(app) -> bool:
    with app.app_context():
        return db.session.scalar(select(WebhookEndpoint.disabled_at)) is not None


def test_the_page_asks_for_a_ticked_box(app, user, receiver):
    pid = _endpoint(user, app, receiver.url)
    page = user.client.get(f"/account/webhooks/{pid}").get_data(as_text=True)
    form = re.search(
        rf'<form method="post" action="/account/webhooks/{pid}/delete">(.*?)</form>', page, re.S
    )
    assert form is not None
    assert 'type="checkbox"' in form.group(1) and "required" in form.group(1)
    assert "nothing more is sent to this URL" in form.group(1)


def test_without_the_box_nothing_is_removed(app, user, receiver):
    pid = _endpoint(user, app, receiver.url)
    for data in ({}, {"confirm": "on"}, {"confirm": ""}):
        resp = user.submit(f"/account/webhooks/{pid}", data, f"/account/webhooks/{pid}/delete")
        assert resp.status_code == 302
        assert resp.headers["Location"].endswith(f"/account/webhooks/{pid}")
        assert not _removed(app)
    page = user.client.get(f"/account/webhooks/{pid}").get_data(as_text=True)
    assert "Tick the box to confirm. The endpoint was not removed." in page
    assert audit_events(app, "webhook.deleted") == []


def test_with_the_box_it_is_removed(app, user, receiver):
    pid = _endpoint(user, app, receiver.url)
    resp = user.submit(
        f"/account/webhooks/{pid}", {"confirm": "y"}, f"/account/webhooks/{pid}/delete"
    )
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/account/webhooks")
    assert _removed(app)
    assert len(audit_events(app, "webhook.deleted")) == 1
