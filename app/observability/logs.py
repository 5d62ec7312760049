"""Logs: one JSON object per line (LOG_FORMAT=json, the default) or plain text for
development (LOG_FORMAT=text), each carrying the request id; and the request id itself.

Stdlib logging with a 30-line formatter rather than python-json-logger: the fields are
few and fixed, and the redaction of key-shaped strings must run on the final line
whatever a message or traceback holds, which is easiest where the line is built.

The request id comes from the caller's `X-Request-Id` when it is safe (1-128 of
`A-Za-z0-9._:+/=-`), else a new one; it is echoed on every answer and put on every log
record written while the request runs (a contextvar, so threads started by a request
do not inherit it by accident).
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

REQUEST_ID_HEADER = "X-Request-Id"
_SAFE_ID = re.compile(r"[A-Za-z0-9._:+/=-]{1,128}")
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "keyledger_request_id", default=None
)

# Anything shaped like a Keyledger key (`<prefix>.<12 id chars>.<39 secret+checksum>`):
# the secret part is replaced, the public id kept (it names the key, it is no secret).
_KEYISH = re.compile(r"\b([a-z][a-z0-9]{1,15}\.[0-9A-Za-z]{12}\.)[0-9A-Za-z]{20,}")
# Bearer credentials and password-ish key=value pairs, should a message quote a header.
_BEARER = re.compile(r"(?i)(bearer\s+|x-api-key[\"']?\s*[:=]\s*[\"']?)[^\s\"',;]+")


def redact(text: str) -> str:
    """The line with key secrets and bearer credentials replaced by [redacted]."""
    if "." in text:
        text = _KEYISH.sub(r"\1[redacted]", text)
    return _BEARER.sub(r"\1[redacted]", text)


class JsonFormatter(logging.Formatter):
    """{"ts", "level", "logger", "msg", "request_id", "pid"[, "exc"]} per record."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": record.process,
        }
        rid = getattr(record, "request_id", None) or request_id.get()
        if rid:
            out["request_id"] = rid
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        return redact(json.dumps(out, ensure_ascii=False, default=str))


class TextFormatter(logging.Formatter):
    """Development: readable lines, the request id in brackets, secrets redacted too."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        record.request_id = getattr(record, "request_id", None) or request_id.get() or "-"
        return redact(super().format(record))


def formatter(log_format: str | None) -> logging.Formatter:
    return TextFormatter() if (log_format or "json").lower() == "text" else JsonFormatter()


_HANDLER_MARK = "_keyledger"


def configure(log_format: str | None, level: str | None) -> None:
    """Send the root logger's records to stderr in the chosen format, once per process
    (create_app runs once per worker; a second app in the process changes nothing)."""
    root = logging.getLogger()
    for handler in root.handlers:
        if getattr(handler, _HANDLER_MARK, False):
            return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format))
    setattr(handler, _HANDLER_MARK, True)
    root.addHandler(handler)
    root.setLevel((level or "INFO").upper())


StartResponse = Callable[..., Any]


class RequestIdMiddleware:
    """WSGI: set the request id for the request's logs and echo it on the answer.

    A WSGI wrapper rather than Flask hooks: it covers every answer (error pages and
    answers of other middleware too) and costs one call; `on_status`, when given, sees
    every answer's status code (the metrics count refusals by it)."""

    def __init__(self, app: Callable[..., Iterable[bytes]], on_status: Any = None) -> None:
        self.app = app
        self.on_status = on_status
        self.new_id = lambda: os.urandom(8).hex()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Any:
        given = environ.get("HTTP_X_REQUEST_ID")
        rid = given if given is not None and _SAFE_ID.fullmatch(given) else self.new_id()
        environ["keyledger.request_id"] = rid
        token = request_id.set(rid)
        on_status = self.on_status

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            headers.append((REQUEST_ID_HEADER, rid))
            if on_status is not None:
                on_status(environ, status)
            return start_response(status, headers, exc_info)

        try:
            return self.app(environ, start)
        finally:
            request_id.reset(token)
