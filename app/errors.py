"""Error pages: JSON under /api/, HTML elsewhere. No input may produce a stack trace."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, render_template, request
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException, InternalServerError

log = logging.getLogger(__name__)

API_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


def wants_json() -> bool:
    return request.path.startswith("/api/")


def _render(code: int, title: str, message: str) -> ResponseReturnValue:
    if wants_json():
        return jsonify({"error": API_CODES.get(code, "error"), "message": message}), code
    return render_template("errors/error.html", code=code, title=title, message=message), code


def http_error_page(exc: HTTPException) -> ResponseReturnValue:
    code = exc.code or 500
    if code == 429:
        message = "Too many requests. Wait a minute and try again."
    elif code == 413:
        message = "The request body is too large."
    else:
        message = exc.description or exc.name
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
        log.exception("database error on %s %s", request.method, request.path)
        from app.extensions import db

        db.session.rollback()
        return _render(
            503,
            "Not saved",
            "The change could not be recorded, so nothing was changed. Try again in a moment.",
        )

    @app.errorhandler(InternalServerError)
    def server_error(exc: InternalServerError) -> ResponseReturnValue:
        return _render(500, "Something went wrong", "The error was logged; nothing was changed.")

    @app.errorhandler(Exception)
    def unhandled(exc: Exception) -> ResponseReturnValue:
        log.exception("unhandled error on %s %s", request.method, request.path)
        from app.extensions import db

        db.session.rollback()
        return _render(500, "Something went wrong", "The error was logged; nothing was changed.")
