"""MAIL_URL against real SMTP servers on 127.0.0.1: plain, STARTTLS with a login and
SMTPS (self-signed certificate), retries, and the production start-up check."""

from __future__ import annotations

import logging
import time

import pytest
from smtp_server import SECRET, USER, html_of, smtp_server, text_of
from support.db import base_config, fresh_db

from app import create_app
from app.config import ConfigError
from app.mail import Mail, MailSettings, mailer

MAIL = Mail("owner@example.com", "Hello", "plain words", "<p>html words</p>")


def _app(migrated_db, tmp_path, **settings):
    return create_app({**base_config(tmp_path, fresh_db(migrated_db, tmp_path)), **settings})


@pytest.mark.parametrize("mode", ["plain", "starttls", "smtps"])
def test_each_transport_delivers_text_and_html(migrated_db, tmp_path, mode):
    with smtp_server(mode, tmp_path) as (box, settings):
        app = _app(migrated_db, tmp_path, **settings, MAIL_FROM="Keyledger <kl@example.com>")
        mailer(app).send(MAIL)
        assert mailer(app).wait(10)
        assert len(box.messages) == 1
        msg = box.messages[0]
        assert msg["From"] == "Keyledger <kl@example.com>" and msg["To"] == "owner@example.com"
        assert text_of(msg).strip() == "plain words"
        assert "html words" in html_of(msg)
        if mode != "plain":
            assert box.logins == [USER]


def test_an_untrusted_certificate_is_not_sent_to(migrated_db, tmp_path):
    with smtp_server("smtps", tmp_path) as (box, settings):
        settings = {**settings, "MAIL_CA_FILE": "", "MAIL_ATTEMPTS": 1}
        app = _app(migrated_db, tmp_path, **settings)
        mailer(app).send(MAIL)
        assert mailer(app).wait(10)
        assert box.messages == [] and mailer(app).failed == 1


def test_a_temporary_failure_is_retried(migrated_db, tmp_path):
    with smtp_server() as (box, settings):
        box.refuse = 2
        app = _app(migrated_db, tmp_path, **settings)
        mailer(app).send(MAIL)
        assert mailer(app).wait(10)
        assert len(box.messages) == 1 and mailer(app).sent == 1 and box.refuse == 0


def test_a_dead_server_never_fails_the_request(migrated_db, tmp_path, caplog):
    from smtp_server import free_port

    app = _app(
        migrated_db,
        tmp_path,
        MAIL_URL=f"smtp+starttls://{USER}:smtp%20password%2042@127.0.0.1:{free_port()}",
        MAIL_ATTEMPTS=2,
        MAIL_RETRY_BASE=0.01,
    )
    client = app.test_client()
    from support.web import Portal

    portal = Portal(client)
    portal.register("owner@example.com")
    portal.logout()
    with caplog.at_level(logging.WARNING, logger="app.mail"):
        resp = portal.submit("/forgot", {"email": "owner@example.com"})
        assert resp.status_code == 200
        deadline = time.monotonic() + 10
        while mailer(app).failed < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert mailer(app).failed == 1
    assert "/reset/" not in caplog.text and SECRET not in caplog.text


def test_unset_mail_url_writes_to_the_log_in_development(migrated_db, tmp_path, caplog):
    app = _app(migrated_db, tmp_path)
    with caplog.at_level(logging.WARNING, logger="app.mail"):
        mailer(app).send(MAIL)
    assert "plain words" in caplog.text


def test_production_refuses_to_start_without_mail_url():
    with pytest.raises(ConfigError, match="MAIL_URL is not set"):
        MailSettings.from_config({"KEYLEDGER_ENV": "production", "MAIL_URL": ""})


@pytest.mark.parametrize(
    "url", ["http://host", "smtp://", "smtp://host:notaport", "ftp://x:1", "smtps//host"]
)
def test_malformed_mail_url_stops_start_up(url):
    with pytest.raises(ConfigError, match="MAIL_URL"):
        MailSettings.from_config({"MAIL_URL": url})


def test_url_parts_are_read():
    s = MailSettings.from_config({"MAIL_URL": "smtp+starttls://u%40x:p%3Aw@mail.example:2525"})
    assert (s.scheme, s.host, s.port, s.username, s.password) == (
        "smtp+starttls",
        "mail.example",
        2525,
        "u@x",
        "p:w",
    )
    assert MailSettings.from_config({"MAIL_URL": "smtps://mail.example"}).port == 465
