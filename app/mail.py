"""Outgoing mail: MAIL_URL (smtp://, smtp+starttls://, smtps://) and MAIL_FROM.

A request only queues a message; a thread per process sends it, retrying with backoff,
so a slow or failing mail server never fails or slows the request. The queue is in
memory on purpose: a message may carry a reset link, which must not rest in the
database; a process that dies loses its unsent mail, and the user asks again.

Without MAIL_URL, messages are written to the log instead (development only:
KEYLEDGER_ENV=production refuses to start without MAIL_URL).
"""

from __future__ import annotations

import logging
import queue
import smtplib
import ssl
import threading
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formataddr, make_msgid
from typing import Any
from urllib.parse import unquote, urlsplit

from flask import Flask, current_app

from app.background import Worker
from app.config import ConfigError

log = logging.getLogger(__name__)
EXTENSION = "keyledger.mail"
_SCHEMES = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}


@dataclass(frozen=True)
class MailSettings:
    scheme: str | None  # None: write to the log
    host: str = ""
    port: int = 0
    username: str | None = None
    password: str | None = None
    sender: str = "Keyledger <keyledger@localhost>"
    timeout: float = 10.0
    ca_file: str | None = None  # a private CA (tests: a self-signed certificate)
    attempts: int = 5
    retry_base: float = 2.0

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> MailSettings:
        url = str(config.get("MAIL_URL") or "")
        common = {
            "sender": str(config.get("MAIL_FROM") or cls.sender),
            "timeout": float(config.get("MAIL_TIMEOUT", 10.0)),
            "ca_file": config.get("MAIL_CA_FILE") or None,
            "attempts": int(config.get("MAIL_ATTEMPTS", 5)),
            "retry_base": float(config.get("MAIL_RETRY_BASE", 2.0)),
        }
        if not url:
            if config.get("KEYLEDGER_ENV") == "production":
                raise ConfigError(
                    "KEYLEDGER_ENV=production but MAIL_URL is not set: password-reset and "
                    "security mails would only reach the log. See docs/operations.md."
                )
            return cls(None, **common)
        parts = urlsplit(url)
        if parts.scheme not in _SCHEMES or not parts.hostname:
            raise ConfigError(
                "MAIL_URL must look like smtp://host:port, smtp+starttls://user:pass@host:port "
                "or smtps://user:pass@host:port"
            )
        try:
            port = parts.port or _SCHEMES[parts.scheme]
        except ValueError as exc:
            raise ConfigError("MAIL_URL has a port that is not a number") from exc
        return cls(
            parts.scheme,
            parts.hostname,
            port,
            unquote(parts.username) if parts.username else None,
            unquote(parts.password) if parts.password else None,
            **common,
        )


@dataclass(frozen=True)
class Mail:
    to: str
    subject: str
    text: str
    html: str


def build(settings: MailSettings, mail: Mail) -> EmailMessage:
    """A multipart/alternative message: plain text first, HTML second."""
    msg = EmailMessage()
    msg["From"] = settings.sender
    msg["To"] = formataddr(("", mail.to))
    msg["Subject"] = mail.subject
    msg["Message-ID"] = make_msgid(domain="keyledger")
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(mail.text)
    msg.add_alternative(mail.html, subtype="html")
    return msg


def _tls_context(settings: MailSettings) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=settings.ca_file)


def deliver(settings: MailSettings, message: EmailMessage) -> None:
    """One attempt over SMTP; raises on any failure (the caller retries)."""
    if settings.scheme == "smtps":
        client: smtplib.SMTP = smtplib.SMTP_SSL(
            settings.host, settings.port, timeout=settings.timeout, context=_tls_context(settings)
        )
    else:
        client = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
    with client:
        if settings.scheme == "smtp+starttls":
            client.starttls(context=_tls_context(settings))
        if settings.username:
            client.login(settings.username, settings.password or "")
        client.send_message(message)


# The sender sleeps this long when nothing wakes it (each queued message wakes it).
IDLE_WAKE = 30.0


class Mailer:
    """The per-app queue and its sending thread (an app.background Worker, started on
    the first message and woken by each one)."""

    def __init__(self, settings: MailSettings) -> None:
        self.settings = settings
        self._queue: queue.Queue[tuple[EmailMessage, int]] = queue.Queue()
        self.worker = Worker("mail", self._drain, IDLE_WAKE)
        self._lock = threading.Lock()
        self.sent = 0
        self.failed = 0
        self._pending = 0  # queued or waiting for a retry

    def send(self, mail: Mail) -> None:
        """Queue a message; never raises for the mail server's sake."""
        message = build(self.settings, mail)
        if self.settings.scheme is None:
            # Development: the whole message, so a reset link can be followed.
            log.warning("MAIL_URL unset; mail not sent:\n%s", message.as_string())
            return
        with self._lock:
            self._pending += 1
        self._put(message, 1)

    def _put(self, message: EmailMessage, attempt: int) -> None:
        self._queue.put((message, attempt))
        self.worker.ensure_running()
        self.worker.wake()

    def _drain(self) -> None:
        """One pass: send everything queued now."""
        while True:
            try:
                message, attempt = self._queue.get_nowait()
            except queue.Empty:
                return
            try:
                deliver(self.settings, message)
                self.sent += 1
                self._done()
            except Exception as exc:  # any failure: count it, keep the thread alive
                # The error's class and text only: never the message (a reset link).
                log.warning(
                    "mail to the server failed (attempt %d of %d): %s: %s",
                    attempt,
                    self.settings.attempts,
                    type(exc).__name__,
                    str(exc)[:200],
                )
                if attempt < self.settings.attempts:
                    delay = self.settings.retry_base * 2 ** (attempt - 1)
                    threading.Timer(delay, self._put, args=(message, attempt + 1)).start()
                else:
                    self.failed += 1
                    self._done()
                    log.error("mail given up after %d attempts", attempt)
            finally:
                self._queue.task_done()

    def _done(self) -> None:
        with self._lock:
            self._pending -= 1

    def wait(self, timeout: float = 10.0) -> bool:
        """Block until every message is sent or given up (tests, shutdown); False on
        timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._pending == 0:
                return True
            time.sleep(0.02)
        return False


def init_app(app: Flask) -> None:
    app.extensions[EXTENSION] = Mailer(MailSettings.from_config(app.config))


def mailer(app: Flask | None = None) -> Mailer:
    return (app or current_app).extensions[EXTENSION]
