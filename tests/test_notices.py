"""Mails to the owner (real SMTP server on 127.0.0.1): a new device, a changed password,
a changed second factor; optional notices can be turned off, security ones cannot."""

from __future__ import annotations

import pyotp
import pytest
from smtp_server import smtp_server, text_of
from support.db import base_config, fresh_db
from support.web import OTHER_PASSWORD, PASSWORD, Portal
from test_two_factor import turn_on

from app import create_app
from app.extensions import db
from app.mail import mailer

EMAIL = "alice@example.com"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


@pytest.fixture
def mail_app(migrated_db, tmp_path):
    with smtp_server() as (box, settings):
        app = create_app({**base_config(tmp_path, fresh_db(migrated_db, tmp_path)), **settings})
        app.inbox = box  # type: ignore[attr-defined]
        yield app
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def subjects(app) -> list[str]:
    assert mailer(app).wait(10)
    return [m["Subject"] for m in app.inbox.messages]


def test_new_device_is_told_known_device_is_not(mail_app):
    alice = Portal(mail_app.test_client())
    alice.register(EMAIL)
    alice.logout()
    alice.login(EMAIL)  # the first browser: nothing to tell
    alice.logout()
    alice.login(EMAIL)  # the same browser (its device cookie) again
    assert subjects(mail_app) == []
    browser = mail_app.test_client()
    browser.environ_base["HTTP_USER_AGENT"] = FIREFOX
    other = Portal(browser)
    other.login(EMAIL)
    assert subjects(mail_app) == ["New log-in to your Keyledger account"]
    body = text_of(mail_app.inbox.messages[0])
    assert "Firefox on Linux" in body and "127.0.0.1" in body
    other.logout()
    other.login(EMAIL)
    assert len(subjects(mail_app)) == 1


def test_a_forged_device_cookie_counts_as_new(mail_app):
    alice = Portal(mail_app.test_client())
    alice.register(EMAIL)
    alice.logout()
    alice.login(EMAIL)
    alice.logout()
    stranger = Portal(mail_app.test_client())
    stranger.client.set_cookie("kl_device", "forged.value")
    stranger.login(EMAIL)
    assert subjects(mail_app) == ["New log-in to your Keyledger account"]


def test_password_change_is_told(mail_app):
    alice = Portal(mail_app.test_client())
    alice.register(EMAIL)
    resp = alice.submit(
        "/account",
        {"current": PASSWORD, "password": OTHER_PASSWORD, "confirm": OTHER_PASSWORD},
        action="/account/password",
    )
    assert resp.status_code == 302
    assert subjects(mail_app) == ["Your Keyledger password was changed"]
    assert PASSWORD not in text_of(mail_app.inbox.messages[0])


def test_second_factor_change_is_told(mail_app):
    alice = Portal(mail_app.test_client())
    alice.register(EMAIL)
    totp, _ = turn_on(alice)
    assert subjects(mail_app) == ["Two-factor sign-in changed on your account"]
    text = text_of(mail_app.inbox.messages[0])
    assert "authenticator app was turned on" in text and totp.secret not in text


def test_optional_notices_can_be_turned_off_security_ones_cannot(mail_app):
    alice = Portal(mail_app.test_client())
    alice.register(EMAIL)
    page = alice.client.get("/account").get_data(as_text=True)
    assert 'value="key_revoked"' in page and 'value="key_expiring"' in page
    assert 'value="new_device"' not in page and 'value="password_changed"' not in page
    # A security notice is not a choice: refused, nothing changed.
    resp = alice.submit(
        "/account", {"wanted": ["key_expiring", "new_device"]}, action="/account/notices"
    )
    assert resp.status_code == 400
    resp = alice.submit("/account", {"wanted": ["key_expiring"]}, action="/account/notices")
    assert resp.status_code == 302
    with mail_app.app_context():
        from app.models import User

        user = db.session.query(User).one()
        assert user.notices_off == "key_revoked"
    page = alice.client.get("/account").get_data(as_text=True)
    assert 'checked id="wanted-1"' in page and 'checked id="wanted-0"' not in page


def test_unknown_notice_names_are_refused_cleanly(mail_app):
    alice = Portal(mail_app.test_client())
    alice.register(EMAIL)
    resp = alice.submit("/account", {"wanted": ["x" * 300]}, action="/account/notices")
    assert resp.status_code == 400
    with mail_app.app_context():
        from app.models import User

        assert db.session.query(User).one().notices_off == ""


def test_totp_code_is_not_in_any_mail(mail_app):
    alice = Portal(mail_app.test_client())
    alice.register(EMAIL)
    totp, codes = turn_on(alice)
    assert isinstance(totp, pyotp.TOTP)
    subjects(mail_app)
    for msg in mail_app.inbox.messages:
        for code in codes:
            assert code not in msg.as_string()


def _admin(app) -> Portal:
    result = app.test_cli_runner().invoke(
        args=["users", "create", "root@example.com", "--admin"], input=PASSWORD + "\n"
    )
    assert result.exit_code == 0, result.output
    root = Portal(app.test_client())
    root.login("root@example.com")
    return root


def _uid(app, email: str) -> int:
    from app.models import User

    with app.app_context():
        return db.session.query(User).filter_by(email=email).one().id


def test_admin_revocation_is_told_unless_turned_off(mail_app):
    alice = Portal(mail_app.test_client())
    alice.register(EMAIL)
    _, first = alice.create_key(name="billing-worker")
    _, second = alice.create_key(name="reports")
    root = _admin(mail_app)
    uid = _uid(mail_app, EMAIL)
    page = root.client.get(f"/admin/users/{uid}").get_data(as_text=True)
    import re

    pids = re.findall(r'action="/admin/keys/([^/]+)/revoke"', page)
    assert len(pids) == 2
    root.submit(
        f"/admin/users/{uid}", {"reason": "Seen in a paste"}, action=f"/admin/keys/{pids[0]}/revoke"
    )
    assert subjects(mail_app) == ["An administrator revoked one of your API keys"]
    assert "Seen in a paste" in text_of(mail_app.inbox.messages[0])
    alice.submit("/account", {"wanted": ["key_expiring"]}, action="/account/notices")
    root.submit(f"/admin/users/{uid}", {"reason": "Old"}, action=f"/admin/keys/{pids[1]}/revoke")
    assert len(subjects(mail_app)) == 1
    assert first and second


def test_a_key_reported_leaked_is_told(mail_app):
    alice = Portal(mail_app.test_client())
    alice.register(EMAIL)
    _, plaintext = alice.create_key(name="ci-deploy")
    resp = mail_app.test_client().post(
        "/api/v1/keys/report-leak", json={"credentials": [plaintext]}
    )
    assert resp.status_code == 202
    assert subjects(mail_app) == ["One of your API keys was reported leaked"]
    body = text_of(mail_app.inbox.messages[0])
    assert "ci-deploy" in body and plaintext not in body


def test_expiring_keys_are_told_once_by_the_daily_command(mail_app):
    alice = Portal(mail_app.test_client())
    alice.register(EMAIL)
    alice.create_key(name="short-lived", days=1)
    alice.create_key(name="a-week", days=7)  # its window is its last 42 hours: not yet
    alice.create_key(name="long-lived", days=60)
    runner = mail_app.test_cli_runner()
    result = runner.invoke(args=["notices", "expiring"])
    assert result.exit_code == 0 and "1 expiry notice sent" in result.output
    assert subjects(mail_app) == ["An API key of yours expires soon"]
    body = text_of(mail_app.inbox.messages[0])
    assert "short-lived" in body and "long-lived" not in body and "a-week" not in body
    assert "http://localhost:5000/account" in body
    result = runner.invoke(args=["notices", "expiring"])
    assert "0 expiry notices sent" in result.output and len(subjects(mail_app)) == 1


def test_expiry_notice_can_be_turned_off(mail_app):
    alice = Portal(mail_app.test_client())
    alice.register(EMAIL)
    alice.submit("/account", {"wanted": ["key_revoked"]}, action="/account/notices")
    alice.create_key(name="short-lived", days=1)
    result = mail_app.test_cli_runner().invoke(args=["notices", "expiring"])
    assert "0 expiry notices sent" in result.output and subjects(mail_app) == []
