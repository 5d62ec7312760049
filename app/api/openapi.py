"""The OpenAPI 3.1 document of the JSON API (GET /api/v1/openapi.json), assembled from
the pydantic models that check the requests (app/api/schemas.py) and the outcome
catalogue (app/outcomes.py): what is written here is only which operation takes and
answers which model. tests/api/test_openapi.py checks real answers against it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from app import outcomes
from app.api import schemas as s
from app.api.auth import MAX_BODY
from app.config import TIERS
from app.keys import leaks

REF = "#/components/schemas/{model}"
RL = ["X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"]
SECURITY = [{"bearer": []}, {"apiKeyHeader": []}]
MODELS: tuple[type[BaseModel], ...] = (
    s.ValidateRequest,
    s.Validated,
    s.ValidateRefused,
    s.Error,
    s.KeyList,
    s.CreateKey,
    s.NewKey,
    s.Changed,
    s.Rotate,
    s.Rotated,
    s.Policies,
    s.Receipts,
    s.Usage,
    s.LeakReport,
    s.LeakReceived,
    s.GitHubToken,
    s.GitHubLabel,
)


@dataclass(frozen=True)
class Op:
    method: str
    path: str
    operation_id: str
    summary: str
    answers: dict[int, tuple[Any, str] | tuple[Any, str, list[str]]]
    body: type[BaseModel] | None = None
    body_required: bool = True
    scope: str | None = None  # key-authenticated: the scope it needs
    description: str = ""
    params: list[dict[str, Any]] = field(default_factory=list)
    body_schema: dict[str, Any] | None = None  # a body that is not one model


def _ref(model: type[BaseModel] | str) -> dict[str, str]:
    return {"$ref": REF.format(model=model if isinstance(model, str) else model.__name__)}


def _codes(status: int) -> list[str]:
    return [c for c, o in outcomes.OUTCOMES.items() if o.status == status]


def _error(codes: list[str]) -> dict[str, Any]:
    return {"allOf": [_ref(s.Error), {"properties": {"error": {"enum": codes}}}]}


def _answer(schema: Any, description: str, headers: list[str] | None = None) -> dict[str, Any]:
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        schema = _ref(schema)
    out: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }
    if headers:
        out["headers"] = {h: {"$ref": f"#/components/headers/{h}"} for h in headers}
    return out


def _key_errors(scope: str) -> dict[int, tuple[Any, str] | tuple[Any, str, list[str]]]:
    """What any key-authenticated call may answer besides its own results."""
    return {
        400: (_error(["bad_request"]), "Malformed body or parameters; nothing changed."),
        401: (
            _error(_codes(401)),
            "No key, or the key is malformed, unknown, revoked or expired.",
            ["WWW-Authenticate"],
        ),
        403: (
            _error(_codes(403)),
            f"The key lacks `{scope}` (see `missing`), or the caller's address is outside "
            "the key's IP allowlist (not charged: no X-RateLimit-*). Managing keys, also "
            "when the key acted on or asked for goes beyond the calling key: scopes it "
            "lacks (`missing`), or an IP allowlist outside or wider than its own.",
        ),
        413: (_error(["payload_too_large"]), f"Body over {MAX_BODY // 1024} KiB."),
        429: (
            _error(_codes(429)),
            "Over the key's limit (with X-RateLimit-*), too many failed guesses from this "
            "address, or the monthly quota is spent (Retry-After: until the month's start).",
            ["Retry-After"],
        ),
        503: (_error(["unavailable"]), "Database or limit storage unreachable; retry."),
    }


def _refusals() -> dict[int, tuple[Any, str] | tuple[Any, str, list[str]]]:
    """The validation endpoint's refusals, by status, each code from the catalogue."""
    by_status: dict[int, list[str]] = {}
    for code in outcomes.VALIDATION_ERRORS:
        by_status.setdefault(outcomes.OUTCOMES[code].status, []).append(code)
    out: dict[int, tuple[Any, str] | tuple[Any, str, list[str]]] = {}
    for status, codes in sorted(by_status.items()):
        words = "; ".join(f"{c}: {outcomes.OUTCOMES[c].message}" for c in codes)
        headers = ["Retry-After"] if status in (429, 503) else None
        out[status] = (s.ValidateRefused, words, headers) if headers else (s.ValidateRefused, words)
    return out


def _query(model: type[BaseModel]) -> list[dict[str, Any]]:
    """Query parameters from a model's fields (their schema, default and description)."""
    schema = model.model_json_schema(ref_template=REF)
    params = []
    for name, prop in schema["properties"].items():
        described = {k: v for k, v in prop.items() if k not in ("title", "description")}
        param = {"name": name, "in": "query", "schema": described}
        if prop.get("description"):
            param["description"] = prop["description"]
        params.append(param)
    return params


KEY_PATH = {"name": "key_id", "in": "path", "required": True, "schema": {"type": "string"}}
NOT_FOUND = (_error(["not_found"]), "No such key of this owner.")


def operations(config: Mapping[str, Any]) -> list[Op]:
    return [
        Op(
            "post",
            "/keys/validate",
            "validateKey",
            "Is this key live, and does it hold these scopes?",
            {200: (s.Validated, "The key is live.", RL), **_refusals()},
            body=s.ValidateRequest,
            body_required=False,
            description="The key comes in the body (`key`), in `Authorization: Bearer`, or "
            "in `X-API-Key`. No key from the caller is needed: this endpoint is for "
            "services checking their clients' keys. X-RateLimit-* come with every answer "
            "about an identified key.",
        ),
        Op(
            "get",
            "/keys",
            "listKeys",
            "The caller's owner's keys (scope keys:read).",
            {200: (s.KeyList, "Newest first.", RL), **_key_errors("keys:read")},
            scope="keys:read",
        ),
        Op(
            "post",
            "/keys",
            "createKey",
            "Create a key (keys:write); the secret is in this answer only.",
            {201: (s.NewKey, "Created.", RL), **_key_errors("keys:write")},
            body=s.CreateKey,
            scope="keys:write",
            description="A key may only grant scopes it holds itself; the new key's tier is "
            "the owner's and its lifetime is capped by the owner's tier.",
        ),
        Op(
            "post",
            "/keys/{key_id}/revoke",
            "revokeKey",
            "Revoke one of the owner's keys now (scope keys:write).",
            {
                200: (s.Changed, "Revoked (changed: false if it was).", RL),
                404: NOT_FOUND,
                **_key_errors("keys:write"),
            },
            scope="keys:write",
            params=[KEY_PATH],
        ),
        Op(
            "get",
            "/keys/{key_id}/receipts",
            "keyReceipts",
            "Audit receipts: each lifecycle event of the key with its C2SP tlog-proof and "
            "the signed checkpoint (docs/audit.md).",
            {200: (s.Receipts, "The receipts.", RL), 404: NOT_FOUND, **_key_errors("keys:read")},
            scope="keys:read",
            params=[KEY_PATH],
        ),
        Op(
            "post",
            "/keys/{key_id}/rotate",
            "rotateKey",
            "Issue a successor; the old key ends after `grace`.",
            {
                201: (s.Rotated, "The successor, with its secret.", RL),
                404: NOT_FOUND,
                409: (
                    _error(["conflict", "already_rotated"]),
                    "Only a live key that was not rotated yet can be rotated "
                    "(`already_rotated` names the `successor`).",
                ),
                **_key_errors("keys:write"),
            },
            body=s.Rotate,
            body_required=False,
            scope="keys:write",
            params=[KEY_PATH],
        ),
        Op(
            "patch",
            "/keys/{key_id}/policies",
            "setKeyPolicies",
            "Set a key's IP allowlist and metadata (scope keys:write).",
            {
                200: (s.Changed, "Set (changed: false if equal).", RL),
                404: NOT_FOUND,
                **_key_errors("keys:write"),
            },
            body=s.Policies,
            scope="keys:write",
            params=[KEY_PATH],
            description="Fields given replace the key's (null clears), fields left out "
            "stay. A bad range or `meta`: 400, nothing changed. Audited as "
            "key.policy_changed.",
        ),
        Op(
            "post",
            "/keys/report-leak",
            "reportLeak",
            "Report strings found in public; every live key among them is revoked at once.",
            {
                202: (s.LeakReceived, "Received; nothing is told."),
                400: (_error(["bad_request"]), "Not 1-1,000 strings; nothing changed."),
                413: (_error(["payload_too_large"]), "Body over 128 KiB."),
                429: (
                    _error(["rate_limited"]),
                    "Too many reports from this address.",
                    ["Retry-After"],
                ),
                503: (_error(["unavailable"]), "Database or limit storage unreachable."),
            },
            body=s.LeakReport,
            description="No authentication; limited per client IP "
            f"({config.get('LEAK_REPORT_LIMIT', '10/minute')}). The answer depends only on "
            "what was sent, never on what was found.",
        ),
        Op(
            "post",
            "/secret-scanning/github",
            "githubSecretScanning",
            "GitHub secret scanning's partner alert (signed by GitHub).",
            {
                200: (
                    {"type": "array", "items": _ref(s.GitHubLabel)},
                    "One label per token, in order.",
                ),
                400: (_error(["bad_request"]), "Signed, but not GitHub's alert format."),
                401: (_error(["invalid_signature"]), "Missing or bad signature; nothing changed."),
                413: (_error(["payload_too_large"]), "Body over 1 MiB."),
                503: (_error(["unavailable"]), "Database unreachable."),
            },
            description="Github-Public-Key-Identifier and Github-Public-Key-Signature (ECDSA "
            "P-256, SHA-256, over the raw body) must verify against GitHub's "
            "meta/public_keys/secret_scanning keys (GITHUB_SECRET_SCANNING_KEYS). Every "
            "live key among the tokens is revoked; a repeated alert changes nothing more.",
            params=[
                {"name": h, "in": "header", "required": True, "schema": {"type": "string"}}
                for h in ("Github-Public-Key-Identifier", "Github-Public-Key-Signature")
            ],
            body_schema={
                "type": "array",
                "maxItems": leaks.MAX_REPORTED,
                "items": _ref(s.GitHubToken),
            },
        ),
        Op(
            "get",
            "/usage",
            "usage",
            "Request counts and latency of one key (scope usage:read).",
            {
                200: (s.Usage, "One bucket per step, empty ones too.", RL),
                404: NOT_FOUND,
                **_key_errors("usage:read"),
            },
            scope="usage:read",
            params=_query(s.UsageQuery),
        ),
        Op(
            "get",
            "/openapi.json",
            "openapi",
            "This document.",
            {200: ({"type": "object"}, "OpenAPI 3.1")},
        ),
    ]


def _operation(op: Op) -> dict[str, Any]:
    out: dict[str, Any] = {"operationId": op.operation_id, "summary": op.summary}
    if op.description:
        out["description"] = op.description
    if op.scope:
        out["security"] = SECURITY
    if op.params:
        out["parameters"] = op.params
    body = op.body_schema or (_ref(op.body) if op.body is not None else None)
    if body is not None:
        out["requestBody"] = {
            "required": op.body_required,
            "content": {"application/json": {"schema": body}},
        }
    out["responses"] = {str(status): _answer(*answer) for status, answer in op.answers.items()}
    return out


@cache
def _components() -> dict[str, Any]:
    _, top = models_json_schema([(m, "validation") for m in MODELS], ref_template=REF)
    return top["$defs"]


def document(config: Mapping[str, Any]) -> dict[str, Any]:
    rates = config["TIER_RATE_LIMITS"]
    tier_text = ", ".join(f"{t} {rates[t]}/minute" for t in TIERS if t in rates)
    paths: dict[str, dict[str, Any]] = {}
    for op in operations(config):
        paths.setdefault(op.path, {})[op.method] = _operation(op)
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "info": {
            "title": "Keyledger API",
            "version": "1",
            "description": (
                "Validate API keys and manage them with API keys. Every answer about an "
                "identified key carries X-RateLimit-Limit/-Remaining/-Reset; the limit is "
                f"per key by its owner's tier ({tier_text}, moving window), or an "
                "administrator's own limit for the key. Failed guesses (malformed or "
                "invalid keys) are limited per client IP "
                f"({config.get('FAILED_VALIDATION_LIMIT', '30/minute')}). See docs/api.md."
            ),
        },
        "servers": [{"url": "/api/v1"}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
            "headers": {
                "X-RateLimit-Limit": {
                    "description": "Requests per minute for this key.",
                    "schema": {"type": "integer"},
                },
                "X-RateLimit-Remaining": {
                    "description": "Requests left in the current window.",
                    "schema": {"type": "integer"},
                },
                "X-RateLimit-Reset": {
                    "description": "Unix time when the oldest counted request leaves the window.",
                    "schema": {"type": "integer"},
                },
                "Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}},
                "WWW-Authenticate": {"schema": {"type": "string"}},
            },
            "schemas": _components(),
        },
    }
