"""Managing an endpoint after it is registered (issue 18): edit it with the checks of
creation, roll its secret, read a delivery's payload, resend one, and a delivery log
that updates itself after "Send a test event"."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from support.db import new_app
from support.receiver import Receiver
from support.rows import audit_events
from support.web import Portal

from app.extensions import db
from app.models import WebhookEndpoint

from .test_webhooks import SECRET_RE, _endpoints, deliveries, dispatch, registered, verified


def _test_event(user: Portal, pid: str) -> None:
    user.submit(f"/account/webhooks/{pid}", {}, f"/account/webhooks/{pid}/test")


def _edit(user: Portal, pid: str, **data):
    return user.submit(f"/account/webhooks/{pid}", data, f"/account/webhooks/{pid}/edit")


def _row(app: Flask) -> WebhookEndpoint:
    [endpoint] = _endpoints(app)
    return endpoint


def test_edit_url_events_and_description(app, user, receiver):
    registered(user, receiver.url)
    pid = _row(app).public_id
    other = Receiver()
    try:
        resp = _edit(
            user,
            pid,
            url=other.url,
            events=["key.revoked", "key.leaked"],
            description="  billing   service, staging ",
        )
        assert resp.status_code == 302
        page = user.client.get(f"/account/webhooks/{pid}").get_data(as_text=True)
        assert "The endpoint is saved." in page and "billing service, staging" in page
        row = _row(app)
        assert (row.url, row.events) == (other.url, ["key.revoked", "key.leaked"])
        assert row.description == "billing service, staging"
        listing = user.client.get("/account/webhooks").get_data(as_text=True)
        assert "billing service, staging" in listing
        [event] = audit_events(app, "webhook.updated")
        assert event.target == f"webhook:{pid}"
        details = json.loads(event.details)
        assert details["url"] == {"from": receiver.url, "to": other.url}
        assert set(details) == {"url", "events", "description"}

        # Deliveries go to the new URL from now on.
        _test_event(user, pid)
        dispatch(app)
        assert len(other.requests) == 1 and receiver.requests == []
    finally:
        other.close()

    # Saving what is already there changes nothing and records nothing.
    _edit(
        user,
        pid,
        url=other.url,
        events=["key.revoked", "key.leaked"],
        description="billing service, staging",
    )
    assert len(audit_events(app, "webhook.updated")) == 1


@pytest.mark.parametrize(
    "data, message",
    [
        ({"url": "ftp://example.com/x", "events": ["key.revoked"]}, "http:// or https://"),
        ({"url": "", "events": ["key.revoked"]}, "Enter the URL"),
        ({"url": "https://93.184.216.34/new", "events": []}, "Choose at least one event"),
        (
            {
                "url": "https://93.184.216.34/new",
                "events": ["key.revoked"],
                "description": "d" * 201,
            },
            "at most 200 characters",
        ),
        ({"url": "http://user:pw@93.184.216.34/", "events": ["key.revoked"]}, "no user name"),
        ({"url": "http://127.0.0.1:9/hook", "events": ["key.revoked"]}, "private, loopback"),
        ({"url": "http://[::ffff:10.0.0.1]/", "events": ["key.revoked"]}, "private, loopback"),
    ],
)
def test_a_refused_edit_keeps_what_was_typed_and_changes_nothing(
    app, tmp_path: Path, data, message
):
    # The default app: private addresses refused, as on a real server.
    strict = new_app(tmp_path / "strict", app.config["SQLALCHEMY_DATABASE_URI"])
    try:
        carol = Portal(strict.test_client())
        carol.register("carol@example.com")
        resp = carol.submit(
            "/account/webhooks",
            {"url": "https://93.184.216.34/hook", "events": ["key.revoked"], "description": "x"},
        )
        assert resp.status_code == 200, resp.get_data(as_text=True)
        before = _row(app)
        resp = _edit(carol, before.public_id, **data)
        assert resp.status_code == 400
        page = resp.get_data(as_text=True)
        assert message in page
        if data["url"]:
            assert f'value="{data["url"]}"' in page.replace("&amp;", "&")
        if data.get("description"):
            assert data["description"] in page
        after = _row(app)
        assert (after.url, after.events, after.description) == (
            before.url,
            before.events,
            before.description,
        )
        assert audit_events(app, "webhook.updated") == []
    finally:
        with strict.app_context():
            db.session.remove()
            db.engine.dispose()


def test_roll_the_secret(app, user, receiver):
    old = registered(user, receiver.url)
    pid = _row(app).public_id
    detail = f"/account/webhooks/{pid}"

    # Without the ticked box, nothing changes.
    resp = user.submit(detail, {}, f"{detail}/roll")
    assert resp.status_code == 302
    assert "The secret was not changed" in user.client.get(detail).get_data(as_text=True)
    assert audit_events(app, "webhook.secret_rolled") == []

    resp = user.submit(detail, {"confirm": "y"}, f"{detail}/roll")
    assert resp.status_code == 200 and resp.headers["Cache-Control"] == "no-store"
    page = resp.get_data(as_text=True)
    assert "New signing secret" in page
    new = SECRET_RE.search(page).group(1)
    assert new != old
    assert new not in user.client.get(detail).get_data(as_text=True), "shown once"

    _test_event(user, pid)
    dispatch(app)
    [req] = receiver.requests
    assert Webhook(new).verify(req["body"], req["headers"])["type"] == "webhook.test"
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(req["body"], req["headers"])

    [event] = audit_events(app, "webhook.secret_rolled")
    assert event.target == f"webhook:{pid}"
    assert new not in event.details and old not in event.details


def test_a_deliverys_payload_and_resend(app, user, other, receiver):
    secret = registered(user, receiver.url)
    pid = _row(app).public_id
    _test_event(user, pid)
    dispatch(app)
    [d] = deliveries(app)
    assert d.state == "delivered"

    log = user.client.get(f"/account/webhooks/{pid}").get_data(as_text=True)
    link = f"/account/webhooks/{pid}/deliveries/{d.id}"
    assert f'href="{link}"' in log
    page = user.client.get(link).get_data(as_text=True)
    assert (
        d.msg_id in page
        and "It works." in page
        and "&#34;type&#34;: &#34;webhook.test&#34;" in page
    )
    assert other.client.get(link).status_code == 404
    assert user.client.get(f"/account/webhooks/{pid}/deliveries/999999").status_code == 404

    # Someone else cannot resend it.
    assert other.client.post(f"{link}/resend", data={}).status_code in (400, 404)
    resp = user.submit(link, {}, f"{link}/resend")
    assert resp.status_code == 302
    [d] = deliveries(app)
    assert d.state == "pending"
    assert "queued again" in user.client.get(f"/account/webhooks/{pid}").get_data(as_text=True)

    # While pending it cannot be resent again.
    user.submit(f"/account/webhooks/{pid}", {}, f"{link}/resend")
    assert "still being sent" in user.client.get(f"/account/webhooks/{pid}").get_data(as_text=True)

    dispatch(app)
    [d] = deliveries(app)
    assert (d.state, d.attempts) == ("delivered", 2)
    first, again = receiver.requests
    assert first["headers"]["webhook-id"] == again["headers"]["webhook-id"] == d.msg_id
    assert [b["type"] for b in verified(receiver, secret)] == ["webhook.test"] * 2
    [event] = audit_events(app, "webhook.resent")
    assert event.target == f"webhook:{pid}" and d.msg_id in event.details


def test_the_log_updates_itself_after_a_test(app, user, receiver):
    registered(user, receiver.url)
    pid = _row(app).public_id
    page = user.client.get(f"/account/webhooks/{pid}").get_data(as_text=True)
    assert 'id="delivery-log"' in page and "data-refresh" not in page

    _test_event(user, pid)
    page = user.client.get(f"/account/webhooks/{pid}").get_data(as_text=True)
    log_url = re.search(r'data-log-url="([^"]+)"', page).group(1)
    assert 'data-refresh="' in page, "the page polls while a message is pending"
    assert "webhook.test" in page and "not tried yet" in page

    dispatch(app)
    fragment = user.client.get(log_url)
    assert fragment.status_code == 200
    text = fragment.get_data(as_text=True)
    assert "delivered" in text and "HTTP 204" in text and "data-refresh" not in text
    assert "<html" not in text
    script = user.client.get("/static/js/app.js").get_data(as_text=True)
    assert "data-log-url" in script or "logUrl" in script
    with app.app_context():
        assert db.session.scalar(select(WebhookEndpoint.public_id)) == pid


def test_resends_are_limited_per_endpoint(app, user, receiver):
    registered(user, receiver.url)
    pid = _row(app).public_id
    _test_event(user, pid)
    dispatch(app)
    [d] = deliveries(app)
    link = f"/account/webhooks/{pid}/deliveries/{d.id}"
    for _ in range(5):  # WEBHOOK_TEST_LIMIT's default: 5 per 10 minutes
        user.submit(link, {}, f"{link}/resend")
        dispatch(app)
    user.submit(link, {}, f"{link}/resend")
    page = user.client.get(f"/account/webhooks/{pid}").get_data(as_text=True)
    assert "Too many resends for this endpoint" in page
    assert deliveries(app)[0].state == "delivered" and len(receiver.requests) == 6
    assert len(audit_events(app, "webhook.resent")) == 5
