"""Request-side glue shared by the blueprints: services, client IP, headers."""

from __future__ import annotations

from flask import Flask, current_app, request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from flask.wrappers import Request, Response
from flask_login import current_user

from app.accounts import Passwords
from app.keys.lifecycle import KeyPolicy


def passwords() -> Passwords:
    return current_app.extensions["keyledger.passwords"]


def key_policy() -> KeyPolicy:
    return current_app.extensions["keyledger.key_policy"]


def client_ip() -> str | None:
    """The peer address, already corrected by ProxyFix for the configured hops only."""
    return request.remote_addr


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


HSTS = "max-age=31536000; includeSubDomains"


def register(app: Flask) -> None:
    app.session_interface = PortalSessionInterface()
    always_hsts = bool(app.config.get("SESSION_COOKIE_SECURE"))

    @app.after_request
    def security_headers(response: Response) -> Response:
        headers = response.headers
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "same-origin")
        # Pages only (redirects included): the API answers JSON and pays nothing more
        # here; the few non-HTML portal answers (usage JSON, audit exports) set their
        # own Cache-Control.
        if response.mimetype == "text/html":
            headers.setdefault("Content-Security-Policy", CSP)
            headers.setdefault("X-Frame-Options", "DENY")
            if always_hsts or request.is_secure:
                headers.setdefault("Strict-Transport-Security", HSTS)
            if request.path.startswith("/admin") or current_user.is_authenticated:
                # A signed-in page must not stay in a shared or back-button cache.
                if "no-store" not in (headers.get("Cache-Control") or ""):
                    headers["Cache-Control"] = "no-store"
                headers.setdefault("Pragma", "no-cache")
        return response

    @app.context_processor
    def inject() -> dict[str, object]:
        return {"registration_open": app.config["REGISTRATION_OPEN"]}
