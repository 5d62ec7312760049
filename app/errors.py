"""Error pages: JSON under /api/, HTML elsewhere. No input may produce a stack trace."""

from __future__ import annotations

import logging
from typing import Any

import redis.exceptions
from flask import Flask, g, make_response, render_template, request
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError
from limits.errors import StorageError
from sqlalchemy import exc as sa_exc
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException, InternalServerError

from app.observability.logs import request_id

log = logging.getLogger(__name__)

SERVER_FAULT = (
    "Keyledger failed on its side and nothing was changed; the error was logged. "
    "Try again in a moment."
)

# What "the database or the limit storage is unreachable" looks like (TimeoutError
# includes app.deadlines.DatabaseTimeout). The API answers these in its own shape
# (app/api/hooks.py); everywhere else they get the 503 page below.
UNAVAILABLE = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    StorageError,
    ConnectionError,
    TimeoutError,
)


# The product's words for an error page when the code gave none of its own (a bare
# abort(404), an unknown URL, a wrong method): Werkzeug's defaults speak of "the
# server" and "the requested URL", not of what the person can do next.
PAGE_WORDS: dict[int, tuple[str, str]] = {
    400: (
        "Request not understood",
        "Keyledger could not read what was sent, so nothing was changed. Go back, reload "
        "the page and try again.",
    ),
    401: ("Log in first", "This page is for signed-in accounts. Log in, then open it again."),
    403: (
        "Not for this account",
        "Your account cannot open this page. If you need it, ask an admin.",
    ),
    404: (
        "Page not found",
        "Nothing is here: the address may be mistyped, or what it showed was removed or "
        "belongs to another account.",
    ),
    405: (
        "Not available that way",
        "This address only answers Keyledger's own buttons and forms. Go back and use them.",
    ),
    413: ("Too much at once", "What was sent is too large, so nothing was changed."),
    429: ("Slow down", "Too many requests. Wait a minute and try again."),
}


def wants_json() -> bool:
    return request.path.startswith("/api/")


def _render(code: int, title: str, message: str) -> tuple[Any, int]:
    if wants_json():
        from app.api.errors import api_error  # not at import: app.api imports this module

        return api_error(code, message=message), code
    # A server-side failure shows the request id, which the logs carry: something to
    # quote when asking an admin what happened.
    words = {"code": code, "title": title, "message": message}
    words["reference"] = request_id.get() if code >= 500 else None
    try:
        page = render_template("errors/error.html", **words)
    except UNAVAILABLE:
        # The page's header loads the signed-in user; with the database gone, any error
        # page (a 400, a 404) is drawn as for an anonymous visitor instead.
        _forget_user()
        page = render_template("errors/error.html", **words)
    return page, code


def _forget_user() -> None:
    from app.extensions import login_manager

    _rollback_quietly()
    g._login_user = login_manager.anonymous_user()  # Flask-Login's per-request user slot


def _rollback_quietly() -> None:
    """Undo the request's transaction; on a dead connection that fails too, and the
    pool discards the connection when the session ends."""
    from app.extensions import db

    try:
        db.session.rollback()
    except Exception:
        log.debug("rollback failed on an unreachable database", exc_info=True)


def unavailable_page(message: str, title: str = "Temporarily unavailable") -> ResponseReturnValue:
    """The 503 answer, rendered without the database: the page's header would load the
    signed-in user (a query), so it is drawn for an anonymous visitor."""
    _forget_user()
    answer = make_response(*_render(503, title, message))
    answer.headers["Retry-After"] = "1"
    return answer


def http_error_page(exc: HTTPException) -> ResponseReturnValue:
    code = exc.code or 500
    if code == 429:
        message = "Too many requests. Wait a minute and try again."
    elif code == 413:
        message = "The request body is too large."
    else:
        message = exc.description or exc.name
    if not wants_json() and code in PAGE_WORDS:
        title, default = PAGE_WORDS[code]
        own = exc.description and exc.description != type(exc).description
        return _render(code, title, message if own else default)
    return _render(code, exc.name, message)


def register(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError) -> ResponseReturnValue:
        return _render(
            400,
            "This form has expired",
            "The page was open too long or came from elsewhere, so the form was not "
            "accepted and nothing changed. Go back, reload the page and try again.",
        )

    app.register_error_handler(HTTPException, http_error_page)

    @app.errorhandler(SQLAlchemyError)
    def database_error(exc: SQLAlchemyError) -> ResponseReturnValue:
        """The database refused a write (the audit trail's included): the whole
        transaction is undone, so the change never happened without its record."""
        if isinstance(exc, UNAVAILABLE):
            return dependency_down(exc)
        log.exception("database error on %s %s", request.method, request.path)
        _rollback_quietly()
        return unavailable_page(
            "The change could not be recorded, so nothing was changed. Try again in a moment.",
            "Not saved",
        )

    def dependency_down(exc: Exception) -> ResponseReturnValue:
        """The database or the limit storage did not answer (app/deadlines.py bounds the
        wait): a clear 503, and nothing changed. Limit-storage errors from any
        Flask-Limiter decorator (login, registration) land here too: they fail closed."""
        log.error(
            "unavailable on %s %s: %s: %s", request.method, request.path, type(exc).__name__, exc
        )
        _rollback_quietly()
        return unavailable_page(
            "Keyledger cannot reach one of its services right now, so nothing was changed. "
            "Try again in a moment."
        )

    for exc_class in UNAVAILABLE:
        if not issubclass(exc_class, SQLAlchemyError):
            app.register_error_handler(exc_class, dependency_down)

    @app.errorhandler(InternalServerError)
    def server_error(exc: InternalServerError) -> ResponseReturnValue:
        return _render(500, "Something went wrong", SERVER_FAULT)

    @app.errorhandler(Exception)
    def unhandled(exc: Exception) -> ResponseReturnValue:
        log.exception("unhandled error on %s %s", request.method, request.path)
        _rollback_quietly()  # a dead connection must not turn this page into another error
        return _render(500, "Something went wrong", SERVER_FAULT)
