"""Webhooks as an owner and their service see them: register, receive signed events
(checked with the `standardwebhooks` reference library), retries, the delivery log,
and nothing sent where it may not go."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select, text
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from support.db import new_app
from support.receiver import Receiver
from support.rows import count_rows
from support.web import Portal, csrf_token, public_id_of

from app.audit import log as auditlog
from app.audit import service as audit_service
from app.extensions import db
from app.models import ApiKey, WebhookDelivery, WebhookEndpoint
from app.models._types import utcnow
from app.usage import UsageEvent, recorder
from app.webhooks import EVENT_TYPES
from app.webhooks.service import dispatcher

SECRET_RE = re.compile(r'id="new-key"[^>]*value="(whsec_[^"]+)"')


def register(portal: Portal, url: str, events: tuple[str, ...] = EVENT_TYPES):
    return portal.submit("/account/webhooks", {"url": url, "events": list(events)})


def registered(portal: Portal, url: str, events: tuple[str, ...] = EVENT_TYPES) -> str:
    resp = register(portal, url, events)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    m = SECRET_RE.search(resp.get_data(as_text=True))
    assert m, "the secret is shown on the page that answers the form"
    return m.group(1)


def seal(app: Flask) -> None:
    with app.app_context():
        auditlog.seal_all(db.engine, audit_service.settings(app))


def dispatch(app: Flask, now=None) -> tuple[int, int]:
    """One dispatcher pass; `now` lets a test step past a retry's wait."""
    from app.webhooks import delivery, events

    with app.app_context():
        try:
            return (
                events.scan(db.session, now),
                delivery.deliver_due(db.session, dispatcher(app).settings, now),
            )
        finally:
            db.session.remove()


def verified(receiver: Receiver, secret: str) -> list[dict]:
    """Every received body, each checked with the Standard Webhooks reference library."""
    hook = Webhook(secret)
    return [hook.verify(r["body"], r["headers"]) for r in receiver.requests]


def deliveries(app: Flask) -> list[WebhookDelivery]:
    with app.app_context():
        rows = db.session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)).all()
        db.session.expunge_all()
        return rows


def test_a_revocation_reaches_the_endpoint_signed(app, user, receiver):
    _, plaintext = user.create_key("billing")
    secret = registered(user, receiver.url)
    key_id = public_id_of(plaintext)
    page = user.client.get(f"/keys/{key_id}")
    user.client.post(
        f"/keys/{key_id}/revoke",
        data={"csrf_token": csrf_token(page.get_data(as_text=True)), "confirm": "y"},
    )
    seal(app)
    assert dispatch(app) == (1, 1)

    [body] = verified(receiver, secret)
    assert body["type"] == "key.revoked"
    assert body["data"]["key_id"] == key_id
    assert body["data"]["name"] == "billing"
    assert body["data"]["by"] == "owner"
    [req] = receiver.requests
    assert req["path"] == "/hooks/keyledger"
    assert req["headers"]["webhook-signature"].startswith("v1,")
    assert abs(int(req["headers"]["webhook-timestamp"]) - time.time()) < 60

    # The log shows it delivered, with the answer and the time it took.
    [endpoint] = _endpoints(app)
    log = user.client.get(f"/account/webhooks/{endpoint.public_id}").get_data(as_text=True)
    assert "key.revoked" in log and "delivered" in log and "HTTP 204" in log
    assert re.search(r"\d+ ms", log)

    # A second pass sends nothing more: the message id is deterministic.
    assert dispatch(app) == (0, 0)
    assert len(receiver.requests) == 1


def test_a_tampered_body_fails_the_reference_check(app, user, receiver):
    secret = registered(user, receiver.url)
    [endpoint] = _endpoints(app)
    user.submit(
        f"/account/webhooks/{endpoint.public_id}",
        {},
        f"/account/webhooks/{endpoint.public_id}/test",
    )
    dispatch(app)
    [req] = receiver.requests
    assert Webhook(secret).verify(req["body"], req["headers"])["type"] == "webhook.test"
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(req["body"].replace(b"It works", b"It fails"), req["headers"])
    other_secret = "whsec_" + "A" * 43 + "="
    with pytest.raises(WebhookVerificationError):
        Webhook(other_secret).verify(req["body"], req["headers"])


def test_the_secret_is_shown_once_and_not_stored(app, user, receiver):
    secret = registered(user, receiver.url)
    listing = user.client.get("/account/webhooks").get_data(as_text=True)
    assert receiver.url in listing and secret not in listing
    [endpoint] = _endpoints(app)
    detail = user.client.get(f"/account/webhooks/{endpoint.public_id}").get_data(as_text=True)
    assert secret not in detail
    raw = Webhook(secret)._whsecret  # the 32 secret bytes the receiver holds
    with app.app_context():
        for row in db.session.execute(text("SELECT * FROM webhook_endpoint")).all():
            for value in row:
                stored = value if isinstance(value, bytes) else str(value).encode()
                assert raw not in stored and secret.encode() not in stored
        actions = (
            db.session.execute(
                text("SELECT details FROM audit_event WHERE action = 'webhook.created'")
            )
            .scalars()
            .all()
        )
    assert len(actions) == 1 and secret not in actions[0]


def test_a_failed_delivery_is_retried_with_backoff(app, user, receiver):
    secret = registered(user, receiver.url)
    [endpoint] = _endpoints(app)
    receiver.script = [(500, {}), (503, {})]
    user.submit(
        f"/account/webhooks/{endpoint.public_id}",
        {},
        f"/account/webhooks/{endpoint.public_id}/test",
    )

    assert dispatch(app)[1] == 1
    [d] = deliveries(app)
    assert (d.state, d.attempts, d.last_status) == ("pending", 1, 500)
    first_wait = d.next_attempt_at - d.last_attempt_at
    assert dispatch(app)[1] == 0, "not due again before its wait is over"

    assert dispatch(app, d.next_attempt_at + timedelta(seconds=1))[1] == 1
    [d] = deliveries(app)
    assert (d.state, d.attempts, d.last_status) == ("pending", 2, 503)
    assert d.next_attempt_at - d.last_attempt_at > first_wait * 2, "the wait grows"

    assert dispatch(app, d.next_attempt_at + timedelta(seconds=1))[1] == 1
    [d] = deliveries(app)
    assert (d.state, d.attempts, d.last_status) == ("delivered", 3, 204)
    ids = {r["headers"]["webhook-id"] for r in receiver.requests}
    assert len(receiver.requests) == 3 and ids == {d.msg_id}, "one message id across retries"
    assert all(b["type"] == "webhook.test" for b in verified(receiver, secret))


def test_retries_end_after_a_day(app, user, receiver):
    registered(user, receiver.url)
    [endpoint] = _endpoints(app)
    receiver.script = [(500, {})] * 50
    user.submit(
        f"/account/webhooks/{endpoint.public_id}",
        {},
        f"/account/webhooks/{endpoint.public_id}/test",
    )
    now = utcnow()
    for _ in range(50):
        dispatch(app, now)
        [d] = deliveries(app)
        if d.state != "pending":
            break
        now = d.next_attempt_at + timedelta(seconds=1)
    assert d.state == "failed"
    # Growing waits (5 s, 15 s, 45 s, ...), the last attempt a day after the first.
    assert timedelta(hours=24) <= now - d.created_at < timedelta(hours=24, minutes=1)
    assert 8 <= d.attempts <= 12
    log = user.client.get(f"/account/webhooks/{endpoint.public_id}").get_data(as_text=True)
    assert "failed" in log


def test_a_redirect_is_not_followed(app, user, receiver):
    registered(user, receiver.url)
    [endpoint] = _endpoints(app)
    receiver.script = [(302, {"Location": receiver.url.replace("/hooks/", "/elsewhere/")})]
    user.submit(
        f"/account/webhooks/{endpoint.public_id}",
        {},
        f"/account/webhooks/{endpoint.public_id}/test",
    )
    dispatch(app)
    assert [r["path"] for r in receiver.requests] == ["/hooks/keyledger"]
    [d] = deliveries(app)
    assert (d.state, d.last_status) == ("pending", 302)


def test_rotation_expiry_and_rate_limits_are_announced(app, user, receiver):
    _, old = user.create_key("rotating", days=30)
    _, short = user.create_key("short-lived", days=5)
    secret = registered(user, receiver.url)
    old_id, short_id = public_id_of(old), public_id_of(short)

    page = user.client.get(f"/keys/{old_id}").get_data(as_text=True)
    user.client.post(
        f"/keys/{old_id}/rotate",
        data={"csrf_token": csrf_token(page), "grace": "1h", "form_token": "t1"},
    )
    seal(app)
    dispatch(app)
    by_type = {b["type"]: b["data"] for b in verified(receiver, secret)}
    assert by_type["key.rotated"]["key_id"] == old_id
    assert by_type["key.rotated"]["successor_key_id"] not in ("", old_id)
    # A new 5-day key is not expiring yet (issue 18): its window is the last quarter of
    # its lifetime (30 hours); the rotated key (its owner already heard of the rotation)
    # gets no expiry notice either.
    assert "key.expiring" not in by_type

    with app.app_context():
        key = db.session.scalar(select(ApiKey).where(ApiKey.public_id == short_id))
        expires = key.expires_at
    dispatch(app, expires - timedelta(hours=29))  # inside the window: "2 days"
    dispatch(app, expires - timedelta(hours=28))  # the same notice, not again
    expiring = [b["data"] for b in verified(receiver, secret) if b["type"] == "key.expiring"]
    assert [(b["key_id"], b["days_left"]) for b in expiring] == [(short_id, 2)]
    dispatch(app, expires - timedelta(hours=12))  # the last day
    dispatch(app, expires + timedelta(minutes=1))
    dispatch(app, expires + timedelta(minutes=2))
    types = [b["type"] for b in verified(receiver, secret)]
    assert types.count("key.expiring") == 2 and types.count("key.expired") == 1
    assert verified(receiver, secret)[-1]["data"]["key_id"] == short_id
    expiring = [b["data"] for b in verified(receiver, secret) if b["type"] == "key.expiring"]
    assert expiring[-1]["days_left"] == 1

    # Rate limited: many 429s in one hour, one message.
    with app.app_context():
        new_key = db.session.scalar(
            select(ApiKey).where(ApiKey.name == "rotating", ApiKey.public_id != old_id)
        )
        for _ in range(5):
            recorder(app).record(
                UsageEvent(
                    key_id=new_key.id,
                    owner_id=new_key.user_id,
                    endpoint="/v1/x",
                    method="GET",
                    status=429,
                    response_ms=1.0,
                    client_ip="192.0.2.1",
                    at=utcnow(),
                )
            )
        new_id = new_key.public_id
    recorder(app).flush()
    dispatch(app)
    dispatch(app)
    limited = [b for b in verified(receiver, secret) if b["type"] == "key.rate_limited"]
    assert [b["data"]["key_id"] for b in limited] == [new_id]


def test_a_leak_and_an_admin_revocation_are_announced(app, user, admin, receiver):
    _, leaked = user.create_key("pushed")
    _, other = user.create_key("staging")
    secret = registered(user, receiver.url, ("key.leaked", "key.revoked"))
    # Someone reports the key through the public revocation endpoint...
    resp = user.client.post("/api/v1/keys/report-leak", json={"credentials": [leaked]})
    assert resp.status_code == 202
    # ...and an admin revokes the other with a reason.
    other_id = public_id_of(other)
    with app.app_context():
        owner_id = db.session.scalar(select(ApiKey.user_id).where(ApiKey.public_id == other_id))
    page = admin.client.get(f"/admin/users/{owner_id}").get_data(as_text=True)
    resp = admin.client.post(
        f"/admin/keys/{other_id}/revoke",
        data={"csrf_token": csrf_token(page), "reason": "found in a CI log"},
    )
    assert resp.status_code == 302, resp.get_data(as_text=True)
    seal(app)
    dispatch(app)
    by_type = {b["type"]: b["data"] for b in verified(receiver, secret)}
    assert by_type["key.leaked"]["key_id"] == public_id_of(leaked)
    assert by_type["key.leaked"]["found_at"]
    assert by_type["key.revoked"]["key_id"] == other_id
    assert by_type["key.revoked"]["by"] == "administrator"
    assert by_type["key.revoked"]["reason"] == "found in a CI log"


def test_only_chosen_events_are_sent(app, user, receiver):
    user.create_key("quiet", days=3)
    registered(user, receiver.url, ("key.revoked",))
    seal(app)
    assert dispatch(app) == (0, 0), "expiring is not among the chosen events"
    assert receiver.requests == []


def test_bad_endpoint_input_is_refused_and_nothing_is_stored(app, user, receiver):
    for url, message in [
        ("ftp://example.com/x", "http:// or https://"),
        ("https://exa\x00mple.com/", ""),
        ("https://user:pw@example.com/", "no user name"),
        ("https://" + "a" * 2100 + ".com/", "at most 2048"),
        ("not a url", "http:// or https://"),
    ]:
        resp = register(user, url)
        assert resp.status_code == 400, url
        assert message in resp.get_data(as_text=True)
    resp = register(user, receiver.url, ())
    assert resp.status_code == 400 and "at least one event" in resp.get_data(as_text=True)
    resp = user.client.post(
        "/account/webhooks", data={"url": receiver.url, "events": ["key.revoked"]}
    )
    assert resp.status_code == 400, "no CSRF token"
    assert count_rows(app, "webhook_endpoint") == 0
    assert receiver.requests == []


def test_another_users_endpoint_is_not_found(app, user, other, receiver):
    registered(user, receiver.url)
    [endpoint] = _endpoints(app)
    assert other.client.get(f"/account/webhooks/{endpoint.public_id}").status_code == 404
    page = other.client.get("/account/webhooks").get_data(as_text=True)
    resp = other.client.post(
        f"/account/webhooks/{endpoint.public_id}/delete", data={"csrf_token": csrf_token(page)}
    )
    assert resp.status_code == 404
    assert receiver.url not in page
    with app.app_context():
        assert db.session.scalar(select(WebhookEndpoint.disabled_at)) is None


def test_a_removed_endpoint_gets_nothing_more(app, user, receiver):
    _, plaintext = user.create_key("gone")
    registered(user, receiver.url)
    [endpoint] = _endpoints(app)
    user.submit(
        f"/account/webhooks/{endpoint.public_id}",
        {"confirm": "y"},
        f"/account/webhooks/{endpoint.public_id}/delete",
    )
    assert receiver.url not in user.client.get("/account/webhooks").get_data(as_text=True)
    key_id = public_id_of(plaintext)
    page = user.client.get(f"/keys/{key_id}").get_data(as_text=True)
    user.client.post(
        f"/keys/{key_id}/revoke", data={"csrf_token": csrf_token(page), "confirm": "y"}
    )
    seal(app)
    dispatch(app)
    assert receiver.requests == []


def _endpoints(app: Flask) -> list[WebhookEndpoint]:
    with app.app_context():
        rows = db.session.scalars(select(WebhookEndpoint)).all()
        db.session.expunge_all()
        return rows


@pytest.fixture
def strict_app(app: Flask, tmp_path: Path) -> Flask:
    """A second app on the same database with the default: no private targets."""
    strict = new_app(tmp_path / "strict", app.config["SQLALCHEMY_DATABASE_URI"])
    yield strict
    with strict.app_context():
        db.session.remove()
        db.engine.dispose()


def test_private_addresses_are_refused_by_default(app, strict_app, receiver):
    person = Portal(strict_app.test_client())
    person.register("carol@example.com")
    for url in (
        receiver.url,
        receiver.url.replace("127.0.0.1", "localhost"),
        "http://[::1]:9/",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.8/hook",
        "http://[::ffff:127.0.0.1]:9/",
        # Issue 22: IPv6 spellings that embed a private IPv4 address, and ranges
        # Python's own tables call global.
        "http://[::7f00:1]:9/",  # IPv4-compatible
        "http://[::ffff:0:7f00:1]:9/",  # IPv4-translated
        "http://[2002:7f00:1::1]:9/",  # 6to4 of 127.0.0.1
        "http://[2002:a9fe:a9fe::1]/",  # 6to4 of the metadata address
        "http://[64:ff9b::a00:8]/",  # NAT64 of 10.0.0.8
        "http://[64:ff9b:1::7f00:1]:9/",  # local-use NAT64
        "http://[fec0::1]/",  # site-local
        "http://192.88.99.1/",  # 6to4 relay anycast
        "http://2130706433:9/",  # 127.0.0.1 as one number
    ):
        resp = register(person, url)
        assert resp.status_code == 400, url
        assert "private, loopback or reserved" in resp.get_data(as_text=True)
    assert count_rows(strict_app, "webhook_endpoint") == 0

    # An endpoint that was allowed once (say the name now resolves to loopback) is not
    # called by a server that does not allow private targets.
    allowed = Portal(app.test_client())
    allowed.login("carol@example.com")
    registered(allowed, receiver.url)
    [endpoint] = _endpoints(app)
    allowed.submit(
        f"/account/webhooks/{endpoint.public_id}",
        {},
        f"/account/webhooks/{endpoint.public_id}/test",
    )
    dispatch(strict_app)
    assert receiver.requests == []
    [d] = deliveries(app)
    assert d.state == "pending" and "private" in (d.last_error or "")


def test_the_dispatcher_thread_delivers_off_the_request_path(migrated_db, tmp_path, receiver):
    from support.db import fresh_db

    app = new_app(
        tmp_path,
        fresh_db(migrated_db, tmp_path),
        WEBHOOK_ALLOW_PRIVATE=True,
        WEBHOOK_DISPATCHER=True,
        WEBHOOK_INTERVAL=0.2,
    )
    try:
        person = Portal(app.test_client())
        person.register("dave@example.com")
        secret = registered(person, receiver.url)
        [endpoint] = _endpoints(app)
        started = time.monotonic()
        resp = person.submit(
            f"/account/webhooks/{endpoint.public_id}",
            {},
            f"/account/webhooks/{endpoint.public_id}/test",
        )
        assert resp.status_code == 302 and receiver.requests == [], "the request did not wait"
        while not receiver.requests and time.monotonic() - started < 10:
            time.sleep(0.05)
        assert [b["type"] for b in verified(receiver, secret)] == ["webhook.test"]
    finally:
        dispatcher(app).stop()
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def _press_test(portal: Portal, public_id: str):
    return portal.submit(
        f"/account/webhooks/{public_id}", {}, f"/account/webhooks/{public_id}/test"
    )


def test_send_a_test_is_rate_limited_per_endpoint(app, user, receiver):
    """Five presses in ten minutes; the sixth queues nothing and says so."""
    registered(user, receiver.url)
    registered(user, receiver.url + "?second")
    first, second = _endpoints(app)
    for _ in range(5):
        assert _press_test(user, first.public_id).status_code == 302
    before = count_rows(app, "webhook_delivery")
    resp = _press_test(user, first.public_id)
    assert resp.status_code == 302
    page = user.client.get(resp.headers["Location"]).get_data(as_text=True)
    assert "Too many tests for this endpoint" in page
    assert count_rows(app, "webhook_delivery") == before == 5
    # Another endpoint has its own budget.
    _press_test(user, second.public_id)
    assert count_rows(app, "webhook_delivery") == 6


def test_retries_to_one_endpoint_have_a_total_budget(app, user, receiver):
    """However many messages wait for a failing endpoint, it gets at most the budget of
    retries (here 3 an hour); first attempts still go out, the rest wait their turn."""
    app.config["WEBHOOK_RETRY_BUDGET"] = "3 per hour"
    from app.webhooks import service
    from app.webhooks.settings import WebhookSettings

    app.extensions[service.EXTENSION].settings = WebhookSettings.from_config(app.config)
    registered(user, receiver.url)
    [endpoint] = _endpoints(app)
    receiver.script = [(500, {})] * 100
    for _ in range(5):
        _press_test(user, endpoint.public_id)
    assert dispatch(app)[1] == 5  # five first attempts
    later = utcnow() + timedelta(minutes=10)  # every retry is due
    assert dispatch(app, later)[1] == 3  # only the budget's worth of retries
    assert dispatch(app, later)[1] == 0
    assert len(receiver.requests) == 8
    assert {d.state for d in deliveries(app)} == {"pending"}
