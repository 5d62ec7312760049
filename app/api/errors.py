"""Every JSON error answer, built once (microblog's api/errors.py): the API's views and
hooks, the error handlers for /api/ paths (app/errors.py) and the JSON answers of the
portal and admin pages. The shape is the OpenAPI document's `Error`:
{"error": code, "message": words, ...details}; the validation endpoint's refusals add
"valid": false first."""

from __future__ import annotations

from typing import Any

from flask import jsonify
from flask.wrappers import Response

# The `error` code of an answer that has no more precise one, by HTTP status.
HTTP_CODES = {
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


def api_error(
    status: int,
    error: str | None = None,
    message: str | None = None,
    *,
    validating: bool = False,
    **details: Any,
) -> Response:
    """A JSON error answer. `validating`: the validation endpoint's shape."""
    body: dict[str, Any] = {"valid": False} if validating else {}
    body["error"] = error or HTTP_CODES.get(status, "error")
    if message is not None:
        body["message"] = message
    body.update(details)
    response = jsonify(body)
    response.status_code = status
    return response
