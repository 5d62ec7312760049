"""After every API answer: record usage and the validation audit event through the
batched recorder (never a database write in the request); and the API's own error
answers (429 and 503 in the contract's shape)."""

from __future__ import annotations

import logging
import time

from flask import g, request
from flask.typing import ResponseReturnValue
from flask.wrappers import Response

from app import outcomes
from app.api import bp
from app.api.auth import VALIDATE_ENDPOINT, ApiAuth, key_cache
from app.api.errors import api_error
from app.api.state import EXTENSION as API_STATE
from app.api.state import api_state
from app.errors import UNAVAILABLE
from app.extensions import db
from app.models._types import utcnow
from app.usage import UsageEvent

log = logging.getLogger(__name__)


@bp.after_request
def account(response: Response) -> Response:
    auth: ApiAuth | None = g.get("kl_auth")
    if auth is None:
        return response
    headers = response.headers
    charged = auth.charge
    if charged is not None:  # a key was identified: its budget, on every answer
        # Added, not set: only this hook writes them on the API (Flask-Limiter's header
        # hooks skip it), and `set` searches the whole list for each name.
        headers.add("X-RateLimit-Limit", str(charged.limit))
        headers.add("X-RateLimit-Remaining", str(charged.remaining))
        headers.add("X-RateLimit-Reset", str(charged.reset))
    if auth.status == 429 and auth.retry_after is not None:
        headers["Retry-After"] = str(auth.retry_after)
    status = response.status_code
    extensions = auth.app.extensions  # not through `current_app`: a few calls per read
    metrics = extensions.get("keyledger.metrics")
    if metrics is not None:
        metrics.api_answer(
            auth.validating,
            status,
            auth.error,
            auth.started,
            charged is not None and not charged.allowed,
        )
    recorder = extensions.get("keyledger.usage")
    if recorder is None:
        return response
    now = utcnow()
    ip = auth.ip
    record = auth.key
    if record is not None:
        endpoint, method = _served(auth) if auth.validating else (None, None)
        recorder.record(
            UsageEvent(
                key_id=record.id,
                owner_id=record.user_id,
                endpoint=endpoint or _rule(),
                method=method or request.method,
                status=status,
                response_ms=(time.perf_counter() - auth.started) * 1000.0,
                client_ip=ip,
                at=now,
                tier=record.tier,
            )
        )
    if auth.validating and status == 200:
        actor = f"key:{auth.public_id}"
        if extensions[API_STATE].first_this_minute(actor, ip, now.timestamp()):
            recorder.audit(
                "key.validated",
                actor=actor,
                actor_ip=ip,
                target=actor,
                details={"recorded": "first per key, client IP and minute; all in usage"},
                at=now,
            )
    elif auth.error == "rate_limited":
        # A refusal per key (or per guessing IP) and minute: every 429 of a key is in
        # usage (status_429); the trail keeps who was throttled, from where, and when.
        actor = f"key:{auth.public_id}" if record is not None else "anonymous"
        if api_state(auth.app).first_this_minute(f"429 {actor}", ip, now.timestamp()):
            recorder.audit(
                "key.rate_limited",
                actor=actor,
                actor_ip=ip,
                target=actor if record is not None else None,
                outcome="denied",
                details={
                    "error": "rate_limited",  # the key page explains it like a failure
                    "endpoint": _rule(),
                    "limit": "key" if record is not None else "failed_validations",
                    "recorded": "first per key (or IP) and minute; all 429s in usage",
                },
                at=now,
            )
    elif auth.error in outcomes.AUDITED_FAILURES:
        actor = f"key:{auth.public_id}" if auth.public_id else "anonymous"
        details: dict[str, object] = {"error": auth.error, "endpoint": _rule()}
        if auth.missing:
            details["missing"] = auth.missing  # the owner's key page shows them
        if auth.error == "ip_not_allowed":
            details["client_ip"] = str(auth.client) if auth.client is not None else None
        recorder.audit(
            "key.validation_failed",
            actor=actor,
            actor_ip=ip,
            target=actor if auth.public_id else None,
            outcome=outcomes.OUTCOMES[auth.error].audit_outcome,
            details=details,
            at=now,
        )
    return response


def _served(auth: ApiAuth) -> tuple[str | None, str | None]:
    served = auth.body.get("request")
    if isinstance(served, dict):
        return served.get("path"), served.get("method")
    return None, None


def _rule() -> str:
    rule = request.url_rule
    return rule.rule if rule is not None else request.path


def unavailable(exc: Exception) -> ResponseReturnValue:
    log.error("API unavailable: %s: %s", type(exc).__name__, exc)
    key_cache().lose_stamp()  # changes may be announced while we cannot hear them
    db.session.rollback()
    response = api_error(
        503,
        "unavailable",
        outcomes.message("unavailable"),
        validating=request.endpoint == VALIDATE_ENDPOINT,
    )
    response.headers["Retry-After"] = "1"
    return response


for _exc in UNAVAILABLE:
    bp.register_error_handler(_exc, unavailable)
