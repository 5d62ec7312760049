"""Request-side glue shared by the blueprints: services, client IP, headers."""

from __future__ import annotations

from flask import Flask, current_app, request
from flask.wrappers import Response

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


def register(app: Flask) -> None:
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
