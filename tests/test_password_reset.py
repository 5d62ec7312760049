"""Password reset by mail, against a real SMTP server on 127.0.0.1 (aiosmtpd): the same
answer for any address, single-use links that expire, sessions ended, throttles."""

from __future__ import annotations

from datetime import timedelta

import pytest
from smtp_server import link_in, smtp_server, text_of
from support.db import base_config, fresh_db
from support.rows import audit_events
from support.web import PASSWORD, Portal

from app import create_app
from app.extensions import db
from app.mail import mailer

EMAIL = "alice@example.com"
NEW_PASSWORD = "a brand new long passphrase"


@pytest.fixture
def inbox(migrated_db, tmp_path):
    with smtp_server() as (box, settings):
        yield box, settings


@pytest.fixture
def mail_app(inbox, migrated_db, tmp_path):
    _, settings = inbox
    app = create_app({**base_config(tmp_path, fresh_db(migrated_db, tmp_path)), **settings})
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def alice(mail_app) -> Portal:
    portal = Portal(mail_app.test_client())
    assert portal.register(EMAIL).status_code == 302
    portal.logout()
    return portal


def ask(portal: Portal, email: str):
    return portal.submit("/forgot", {"email": email})


def delivered(app, box, n: int):
    assert mailer(app).wait(10)
    assert len(box.messages) == n, [m["Subject"] for m in box.messages]
    return box.messages[-1] if n else None


def test_known_address_gets_a_link_that_resets_once(mail_app, inbox, alice):
    box, _ = inbox
    resp = ask(alice, EMAIL)
    assert resp.status_code == 200 and "Check your mail" in resp.get_data(as_text=True)
    msg = delivered(mail_app, box, 1)
    assert msg["To"] == EMAIL and msg.get_content_type() == "multipart/alternative"
    link = link_in(msg)
    path = link.split("://", 1)[1].split("/", 1)[1]
    page = alice.client.get("/" + path)
    assert page.status_code == 200 and "Choose a new password" in page.get_data(as_text=True)
    resp = alice.submit("/" + path, {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert resp.status_code == 302 and resp.headers["Location"] == "/login"
    assert alice.login(EMAIL, PASSWORD).status_code == 400
    assert alice.login(EMAIL, NEW_PASSWORD).status_code == 302
    alice.logout()
    # Used once: dead.
    again = alice.client.get("/" + path)
    assert again.status_code == 400 and "no longer valid" in again.get_data(as_text=True)
    events = audit_events(mail_app, "user.password_reset")
    assert events and events[-1].sensitivity == "high"
    token = path.rsplit("/", 1)[1]
    for event in audit_events(mail_app):
        assert token not in event.details
    # The owner is told, from the same mailer.
    notice = delivered(mail_app, box, 2)
    assert "password was changed" in notice["Subject"]


def test_unknown_address_gets_the_same_answer_and_no_mail(mail_app, inbox, alice):
    box, _ = inbox
    known = ask(alice, EMAIL).get_data(as_text=True)
    unknown = ask(alice, "nobody@example.com").get_data(as_text=True)
    import re

    def strip(html: str) -> str:
        return re.sub(r'value="[^"]*"', 'value=""', html)

    assert strip(known) == strip(unknown)
    delivered(mail_app, box, 1)
    asked = audit_events(mail_app, "user.password_reset_requested")
    assert len(asked) == 2


def test_a_newer_link_kills_the_older_one(mail_app, inbox, alice):
    box, _ = inbox
    ask(alice, EMAIL)
    first = link_in(delivered(mail_app, box, 1))
    ask(alice, EMAIL)
    second = link_in(delivered(mail_app, box, 2))
    assert first != second
    path = lambda link: "/" + link.split("://", 1)[1].split("/", 1)[1]  # noqa: E731
    assert alice.client.get(path(first)).status_code == 400
    assert alice.client.get(path(second)).status_code == 200


def test_an_expired_link_is_refused(mail_app, inbox, alice):
    box, _ = inbox
    ask(alice, EMAIL)
    link = link_in(delivered(mail_app, box, 1))
    from app.models import PasswordReset

    with mail_app.app_context():
        for row in db.session.query(PasswordReset):
            row.expires_at = row.created_at - timedelta(seconds=1)
        db.session.commit()
    path = "/" + link.split("://", 1)[1].split("/", 1)[1]
    assert alice.client.get(path).status_code == 400
    resp = alice.client.post(path, data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert resp.status_code == 400
    assert alice.login(EMAIL, PASSWORD).status_code == 302


def test_reset_ends_every_session(mail_app, inbox, alice):
    box, _ = inbox
    other = Portal(mail_app.test_client())
    other.login(EMAIL)
    assert other.client.get("/keys").status_code == 200
    ask(alice, EMAIL)
    path = "/" + link_in(delivered(mail_app, box, 1)).split("://", 1)[1].split("/", 1)[1]
    alice.submit(path, {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert other.client.get("/keys").status_code == 302


@pytest.mark.parametrize(
    "token", ["x", "A" * 43, "A" * 500, "%00", "..%2f..%2fetc", "é" * 10, "a%0d%0ab"]
)
def test_made_up_tokens_are_refused_cleanly(mail_app, alice, token):
    resp = alice.client.get(f"/reset/{token}")
    assert resp.status_code in (400, 404)
    resp = alice.client.post(f"/reset/{token}", data={"password": NEW_PASSWORD})
    assert resp.status_code in (400, 404)


def test_asking_is_throttled_per_address_silently(mail_app, inbox, alice):
    box, _ = inbox
    mail_app.config["PASSWORD_RESET_ADDRESS_LIMIT"] = "2 per hour"
    for _ in range(4):
        assert ask(alice, EMAIL).status_code == 200
    delivered(mail_app, box, 2)


def test_asking_is_throttled_per_ip(mail_app, inbox, alice):
    mail_app.config["PASSWORD_RESET_IP_LIMIT"] = "3 per hour"
    codes = [ask(alice, f"user{i}@example.com").status_code for i in range(5)]
    assert codes[:3] == [200, 200, 200] and codes[3] == 429


def test_a_short_new_password_is_refused_and_the_link_still_works(mail_app, inbox, alice):
    box, _ = inbox
    ask(alice, EMAIL)
    path = "/" + link_in(delivered(mail_app, box, 1)).split("://", 1)[1].split("/", 1)[1]
    resp = alice.submit(path, {"password": "short", "confirm": "short"})
    assert resp.status_code == 400
    assert alice.client.get(path).status_code == 200
    assert alice.login(EMAIL, PASSWORD).status_code == 302


def test_login_page_offers_the_reset(client):
    assert 'href="/forgot"' in client.get("/login").get_data(as_text=True)


def test_reset_mail_text_has_link_and_expiry(mail_app, inbox, alice):
    box, _ = inbox
    ask(alice, EMAIL)
    msg = delivered(mail_app, box, 1)
    assert "30 minutes" in text_of(msg)
    assert "/reset/" in msg.get_body(preferencelist=("html",)).get_content()
