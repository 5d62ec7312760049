"""A real SMTP server on 127.0.0.1 for mail tests (aiosmtpd): plain, STARTTLS with
login, or SMTPS, with a self-signed certificate the app is told to trust."""

from __future__ import annotations

import datetime
import email
import email.policy
import ipaddress
import re
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

USER, SECRET = "mailer", "smtp password 42"


@dataclass
class Inbox:
    messages: list[EmailMessage] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    refuse: int = 0  # answer this many DATA commands with a temporary failure

    async def handle_DATA(self, server, session, envelope) -> str:
        if self.refuse > 0:
            self.refuse -= 1
            return "451 try again later"
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append(msg)  # type: ignore[arg-type]
        return "250 OK"

    def authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (
            auth_data.login.decode(),
            auth_data.password.decode(),
        ) == (USER, SECRET)
        if ok:
            self.logins.append(auth_data.login.decode())
        return AuthResult(success=ok)


def text_of(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain",))
    assert part is not None
    return part.get_content()


def html_of(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("html",))
    assert part is not None
    return part.get_content()


def link_in(msg: EmailMessage) -> str:
    m = re.search(r"https?://\S+/reset/\S+", text_of(msg))
    assert m, text_of(msg)
    return m.group(0)


def self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "smtp-cert.pem", tmp / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def smtp_server(mode: str = "plain", tmp: Path | None = None) -> Iterator[tuple[Inbox, dict]]:
    """Yield the inbox and the app settings that reach it (MAIL_URL, MAIL_CA_FILE)."""
    inbox = Inbox()
    port = free_port()
    kwargs: dict = {"hostname": "127.0.0.1", "port": port}
    settings: dict = {"MAIL_URL": f"smtp://127.0.0.1:{port}", "MAIL_RETRY_BASE": 0.05}
    if mode != "plain":
        assert tmp is not None
        cert, key = self_signed(tmp)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        settings["MAIL_CA_FILE"] = str(cert)
        kwargs.update(authenticator=inbox.authenticate, auth_require_tls=True)
        if mode == "starttls":
            kwargs.update(tls_context=context, require_starttls=True)
            settings["MAIL_URL"] = f"smtp+starttls://{USER}:smtp%20password%2042@127.0.0.1:{port}"
        else:
            # Implicit TLS: aiosmtpd only counts STARTTLS as "TLS" for its AUTH rule.
            kwargs.update(ssl_context=context, auth_require_tls=False)
            settings["MAIL_URL"] = f"smtps://{USER}:smtp%20password%2042@127.0.0.1:{port}"
    controller = Controller(inbox, **kwargs)
    controller.start()
    try:
        yield inbox, settings
    finally:
        controller.stop()
