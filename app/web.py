"""Request-side glue shared by the blueprints: services, client IP, headers."""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from flask import Flask, current_app, request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from flask.wrappers import Request, Response

from app.accounts import Passwords
from app.keys.lifecycle import KeyPolicy


def passwords() -> Passwords:
    return current_app.extensions["keyledger.passwords"]


def key_policy() -> KeyPolicy:
    return current_app.extensions["keyledger.key_policy"]


def client_ip() -> str | None:
    """The peer address, already corrected by ProxyFix for the configured hops only.

    None when it is not an IP address (a proxy passing on a forged X-Forwarded-For):
    it keys rate limits and lands in usage and audit rows, which must be able to hold it.
    """
    addr = request.remote_addr
    return addr if addr is None else _ip_or_none(addr)


@lru_cache(maxsize=4096)
def _ip_or_none(addr: str) -> str | None:
    try:
        ipaddress.ip_address(addr)
    except ValueError:
        return None
    return addr if len(addr) <= 45 else None  # the address columns' width


CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


API_PREFIX = "/api/"


class PortalSessionInterface(SecureCookieSessionInterface):
    """The signed session cookie for the portal only: the key-authenticated API never
    reads or sets it, and building the signer, parsing and re-signing the cookie was ~3 %
    of a busy validation worker's CPU (py-spy, docs/performance.md). On /api/ a request
    gets an empty session that is never saved, so a browser's portal cookie is not
    honoured there either."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if request.path.startswith(API_PREFIX):
            return self.session_class()
        return super().open_session(app, request)

    def save_session(self, app: Flask, session: SecureCookieSession, response: Response) -> None:
        if request.path.startswith(API_PREFIX):
            return
        super().save_session(app, session, response)


def register(app: Flask) -> None:
    app.session_interface = PortalSessionInterface()

    @app.after_request
    def security_headers(response: Response) -> Response:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if response.mimetype == "text/html":
            response.headers.setdefault("Content-Security-Policy", CSP)
            response.headers.setdefault("X-Frame-Options", "DENY")
        return response

    @app.context_processor
    def inject() -> dict[str, object]:
        return {"registration_open": app.config["REGISTRATION_OPEN"]}
