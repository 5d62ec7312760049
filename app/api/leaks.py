"""Leaked keys: GitHub secret scanning's partner endpoint and the public report endpoint.

Both are thin: the signature check and the revocation live in app/keys/leaks.py.
Neither takes an API key, so neither runs the key authentication (app/api/auth.py).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from flask import current_app, jsonify, request
from flask.blueprints import BlueprintSetupState
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import RequestEntityTooLarge

from app import notices, ratelimit
from app.api import bp, schemas
from app.api.errors import api_error
from app.extensions import db
from app.keys import leaks
from app.web import client_ip, key_policy

GITHUB_BODY_MAX = 1024 * 1024
REPORT_BODY_MAX = 128 * 1024
REPORT_LOCATION = "a public report (POST /api/v1/keys/report-leak)"


@bp.record_once
def _init(state: BlueprintSetupState) -> None:
    app = state.app
    app.extensions["keyledger.github_keys"] = leaks.GitHubKeys(
        str(app.config.get("GITHUB_SECRET_SCANNING_KEYS") or "")
    )


def _raw_body(limit: int) -> bytes | None:
    request.max_content_length = limit
    try:
        return request.get_data(cache=True)
    except RequestEntityTooLarge:
        return None


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


@bp.route("/secret-scanning/github", methods=["POST"])
def github_secret_scanning() -> ResponseReturnValue:
    """GitHub's alert: [{token, type, url, source}], signed by one of GitHub's keys.
    Answered with GitHub's feedback: [{token_hash, token_type, label}]."""
    raw = _raw_body(GITHUB_BODY_MAX)
    if raw is None:
        return api_error(
            413, "payload_too_large", f"the body is limited to {GITHUB_BODY_MAX} bytes"
        )
    github_keys: leaks.GitHubKeys = current_app.extensions["keyledger.github_keys"]
    environ = request.environ
    if not github_keys.verify(
        raw,
        environ.get("HTTP_GITHUB_PUBLIC_KEY_IDENTIFIER"),
        environ.get("HTTP_GITHUB_PUBLIC_KEY_SIGNATURE"),
    ):
        response = api_error(
            401, "invalid_signature", "the body is not signed by a GitHub secret scanning key"
        )
        return response
    alert = schemas.parse(schemas.GitHubAlert, _json(raw))
    if isinstance(alert, str):
        return api_error(
            400,
            "bad_request",
            f"expected a JSON array of at most {leaks.MAX_REPORTED} objects "
            f"{{token, type, url, source}} with string values ({alert})",
        )
    alerts = alert.root
    reports = [leaks.Report(a.token, _where(a.url or "", a.source or "")) for a in alerts]
    found: list[leaks.Leaked] = []
    hits = leaks.revoke_leaked(
        db.session,
        key_policy(),
        reports,
        reporter="github:secret-scanning",
        actor_ip=client_ip(),
        found=found,
    )
    notices.keys_leaked(found)
    return jsonify(
        [
            {
                "token_hash": hashlib.sha256(a.token.encode("utf-8", "replace")).hexdigest(),
                "token_type": a.type or "",
                "label": "true_positive" if hit else "false_positive",
            }
            for a, hit in zip(alerts, hits, strict=True)
        ]
    )


def _where(url: str, source: str) -> str:
    where = url or "GitHub secret scanning"
    return f"{where} ({source})" if source else where


@bp.route("/keys/report-leak", methods=["POST"])
def report_leak() -> ResponseReturnValue:
    """Anyone may report strings they found in public ({"credentials": [...]}, at most
    1,000); every one that is a live key is revoked at once. The answer depends only on
    what was sent, never on what was found, so it is no oracle."""
    retry = ratelimit.spend_ip_budget(
        client_ip(), current_app.config.get("LEAK_REPORT_LIMIT") or "10/minute", "leak-reports"
    )
    if retry is not None:
        response = api_error(429, "rate_limited", "too many reports from this address; wait")
        response.headers["Retry-After"] = str(retry)
        return response
    raw = _raw_body(REPORT_BODY_MAX)
    if raw is None:
        return api_error(
            413, "payload_too_large", f"the body is limited to {REPORT_BODY_MAX} bytes"
        )
    report = schemas.parse(schemas.LeakReport, _json(raw))
    if isinstance(report, str):
        return api_error(
            400,
            "bad_request",
            f'send {{"credentials": [...]}}: 1 to {leaks.MAX_REPORTED} non-empty strings of '
            f"at most {schemas.MAX_TOKEN_LEN} characters ({report})",
        )
    credentials = report.credentials
    found: list[leaks.Leaked] = []
    leaks.revoke_leaked(
        db.session,
        key_policy(),
        [leaks.Report(c.strip(), REPORT_LOCATION) for c in credentials],
        reporter="public:report-leak",
        actor_ip=client_ip(),
        found=found,
    )
    notices.keys_leaked(found)  # queued: the answer does not wait or change
    response = jsonify({"received": len(credentials)})
    response.status_code = 202
    return response
