"""The OpenAPI 3.1 document of the JSON API, served at /api/v1/openapi.json.

Written by hand next to the views it describes; tests/api/test_openapi.py validates
real answers against it, so the two cannot drift apart unnoticed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app import outcomes
from app.config import TIERS

_TIME = {"type": "string", "format": "date-time"}
_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
_OWNER_LIMIT = {
    "type": ["integer", "null"],
    "minimum": 1,
    "description": "The owner's own per-minute limit, at most the tier's (null: the tier's); "
    "an admin's rate_limit wins over it.",
}
_TEST = {
    "type": "boolean",
    "description": "A test key: its own prefix, validates like any key, never billed.",
}
_KEY_ERRORS = ["missing_key", "malformed_key", "invalid_key", "revoked", "expired"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str, headers: list[str] | None = None) -> dict:
    out: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }
    if headers:
        out["headers"] = {h: {"$ref": f"#/components/headers/{h}"} for h in headers}
    return out


_RL = ["X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"]


def _error(codes: list[str], description: str, headers: list[str] | None = None) -> dict:
    schema = {"allOf": [_ref("Error"), {"properties": {"error": {"enum": codes}}}]}
    return _json(schema, description, headers)


def _management_errors(scope: str) -> dict[str, Any]:
    return {
        "400": _error(["bad_request"], "Malformed body or parameters; nothing changed."),
        "401": _error(
            _KEY_ERRORS,
            "No key, or the key is malformed, unknown, revoked or expired.",
            ["WWW-Authenticate"],
        ),
        "403": _error(
            ["insufficient_scope", "ip_not_allowed"],
            f"The key lacks `{scope}` (see `missing`), or the caller's address is outside "
            "the key's IP allowlist (no X-RateLimit-*: not charged).",
        ),
        "413": _error(["payload_too_large"], "Body over 16 KiB."),
        "429": _error(
            ["rate_limited", "quota_exceeded"],
            "Over the key's limit (with X-RateLimit-*), too many failed guesses from this "
            "address, or the key's monthly quota is spent (quota_exceeded; Retry-After: "
            "until the month's start, UTC).",
            ["Retry-After"],
        ),
        "503": _error(["unavailable"], "Database or limit storage unreachable; retry."),
    }


def document(config: Mapping[str, Any]) -> dict[str, Any]:
    rates = config["TIER_RATE_LIMITS"]
    tier_text = ", ".join(f"{t} {rates[t]}/minute" for t in TIERS if t in rates)
    security = [{"bearer": []}, {"apiKeyHeader": []}]
    key_path = {"name": "key_id", "in": "path", "required": True, "schema": {"type": "string"}}
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "info": {
            "title": "Keyledger API",
            "version": "1",
            "description": (
                "Validate API keys and manage them with API keys. Every answer about an "
                "identified key carries X-RateLimit-Limit/-Remaining/-Reset; the limit is "
                f"per key by its owner's tier ({tier_text}, moving window). Failed "
                "guesses (malformed or invalid keys) are limited per client IP "
                f"({config.get('FAILED_VALIDATION_LIMIT', '30/minute')}). See docs/api.md."
            ),
        },
        "servers": [{"url": "/api/v1"}],
        "paths": {
            "/keys/validate": {
                "post": {
                    "operationId": "validateKey",
                    "summary": "Is this key live, and does it hold these scopes?",
                    "description": (
                        "The key comes in the body (`key`), in `Authorization: Bearer`, "
                        "or in `X-API-Key`. No key from the caller is needed: this "
                        "endpoint is for services checking their clients' keys."
                    ),
                    "requestBody": {
                        "required": False,
                        "content": {"application/json": {"schema": _ref("ValidateRequest")}},
                    },
                    "responses": {
                        "200": _json(_ref("Validated"), "The key is live.", _RL),
                        "400": _json(_ref("ValidateError"), "Malformed request."),
                        "401": _json(
                            _ref("ValidateError"),
                            "malformed_key (no lookup was made), invalid_key (unknown id "
                            "or wrong secret, indistinguishable), revoked or expired. "
                            "Rate-limit headers only when the key was identified.",
                        ),
                        "403": _json(
                            _ref("ValidateError"),
                            "insufficient_scope (with X-RateLimit-*), or ip_not_allowed: "
                            "the client IP is outside the key's allowlist (not charged, no "
                            "X-RateLimit-*).",
                        ),
                        "413": _json(_ref("ValidateError"), "Body over 16 KiB."),
                        "429": _json(
                            _ref("ValidateError"),
                            "rate_limited: over the key's limit (with X-RateLimit-*), or too "
                            "many failed guesses from this address; quota_exceeded: the "
                            "key's monthly quota is spent (Retry-After until the month's "
                            "start, UTC).",
                            ["Retry-After"],
                        ),
                        "503": _json(_ref("ValidateError"), "unavailable.", ["Retry-After"]),
                    },
                }
            },
            "/keys": {
                "get": {
                    "operationId": "listKeys",
                    "summary": "The caller's owner's keys (scope keys:read).",
                    "security": security,
                    "responses": {
                        "200": _json(_ref("KeyList"), "Newest first.", _RL),
                        **_management_errors("keys:read"),
                    },
                },
                "post": {
                    "operationId": "createKey",
                    "summary": "Create a key (keys:write); the secret is in this answer only.",
                    "description": (
                        "A key may only grant scopes it holds itself; the new key's tier "
                        "is the owner's and its lifetime is capped by the owner's tier."
                    ),
                    "security": security,
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("CreateKey")}},
                    },
                    "responses": {
                        "201": _json(_ref("NewKey"), "Created.", _RL),
                        **_management_errors("keys:write"),
                    },
                },
            },
            "/keys/{key_id}/revoke": {
                "post": {
                    "operationId": "revokeKey",
                    "summary": "Revoke one of the owner's keys now (scope keys:write).",
                    "security": security,
                    "parameters": [key_path],
                    "responses": {
                        "200": _json(_ref("Revoked"), "Revoked (changed: false if it was).", _RL),
                        "404": _error(["not_found"], "No such key of this owner."),
                        **_management_errors("keys:write"),
                    },
                }
            },
            "/keys/{key_id}/receipts": {
                "get": {
                    "operationId": "keyReceipts",
                    "summary": (
                        "Audit receipts: each lifecycle event of the key with its C2SP "
                        "tlog-proof and the signed checkpoint (docs/audit.md)."
                    ),
                    "security": security,
                    "parameters": [key_path],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["format", "target", "checkpoint", "receipts"],
                                "properties": {
                                    "format": {"const": "keyledger-audit-receipts/1"},
                                    "target": {"type": "string"},
                                    "checkpoint": {"type": ["string", "null"]},
                                    "pending": {"type": "integer"},
                                    "receipts": {"type": "array", "items": {"type": "object"}},
                                },
                            },
                            "The receipts.",
                            _RL,
                        ),
                        "404": _error(["not_found"], "No such key of this owner."),
                        **_management_errors("keys:read"),
                    },
                }
            },
            "/keys/{key_id}/rotate": {
                "post": {
                    "operationId": "rotateKey",
                    "summary": "Issue a successor; the old key ends after `grace`.",
                    "security": security,
                    "parameters": [key_path],
                    "requestBody": {
                        "required": False,
                        "content": {"application/json": {"schema": _ref("Rotate")}},
                    },
                    "responses": {
                        "201": _json(_ref("Rotated"), "The successor, with its secret.", _RL),
                        "404": _error(["not_found"], "No such key of this owner."),
                        "409": _error(
                            ["conflict", "already_rotated"],
                            "Only a live key that was not rotated yet can be rotated "
                            "(`already_rotated` names the `successor`).",
                        ),
                        **_management_errors("keys:write"),
                    },
                }
            },
            "/keys/{key_id}/policies": {
                "patch": {
                    "operationId": "setKeyPolicies",
                    "summary": "Set a key's IP allowlist and metadata (scope keys:write).",
                    "description": (
                        "Fields given replace the key's (null clears), fields left out stay. "
                        "A bad range, a `meta` that is not an object or is over 1 KiB: 400, "
                        "nothing changed. Audited as key.policy_changed."
                    ),
                    "security": security,
                    "parameters": [key_path],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("Policies")}},
                    },
                    "responses": {
                        "200": _json(_ref("PoliciesSet"), "Set (changed: false if equal).", _RL),
                        "404": _error(["not_found"], "No such key of this owner."),
                        **_management_errors("keys:write"),
                    },
                }
            },
            "/keys/report-leak": {
                "post": {
                    "operationId": "reportLeak",
                    "summary": "Report strings found in public; every live key among them "
                    "is revoked at once.",
                    "description": (
                        "No authentication; limited per client IP "
                        f"({config.get('LEAK_REPORT_LIMIT', '10/minute')}). The answer "
                        "depends only on what was sent, never on what was found."
                    ),
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("LeakReport")}},
                    },
                    "responses": {
                        "202": _json(_ref("LeakReceived"), "Received; nothing is told."),
                        "400": _error(["bad_request"], "Not 1-1,000 strings; nothing changed."),
                        "413": _error(["payload_too_large"], "Body over 128 KiB."),
                        "429": _error(
                            ["rate_limited"], "Too many reports from this address.", ["Retry-After"]
                        ),
                        "503": _error(["unavailable"], "Database or limit storage unreachable."),
                    },
                }
            },
            "/secret-scanning/github": {
                "post": {
                    "operationId": "githubSecretScanning",
                    "summary": "GitHub secret scanning's partner alert (signed by GitHub).",
                    "description": (
                        "Github-Public-Key-Identifier and Github-Public-Key-Signature (ECDSA "
                        "P-256, SHA-256, over the raw body) must verify against GitHub's "
                        "meta/public_keys/secret_scanning keys (GITHUB_SECRET_SCANNING_KEYS). "
                        "Every live key among the tokens is revoked; a repeated alert "
                        "changes nothing more."
                    ),
                    "parameters": [
                        {
                            "name": "Github-Public-Key-Identifier",
                            "in": "header",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                        {
                            "name": "Github-Public-Key-Signature",
                            "in": "header",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("GitHubAlert")}},
                    },
                    "responses": {
                        "200": _json(_ref("GitHubFeedback"), "One label per token, in order."),
                        "400": _error(["bad_request"], "Signed, but not GitHub's alert format."),
                        "401": _error(
                            ["invalid_signature"], "Missing or bad signature; nothing changed."
                        ),
                        "413": _error(["payload_too_large"], "Body over 1 MiB."),
                        "503": _error(["unavailable"], "Database unreachable."),
                    },
                }
            },
            "/usage": {
                "get": {
                    "operationId": "usage",
                    "summary": "Request counts and latency of one key (scope usage:read).",
                    "security": security,
                    "parameters": [
                        {
                            "name": "key_id",
                            "in": "query",
                            "schema": {"type": "string"},
                            "description": "Default: the calling key.",
                        },
                        {
                            "name": "from",
                            "in": "query",
                            "schema": _TIME,
                            "description": "Default: `to` minus 1 h / 24 h / 30 d.",
                        },
                        {
                            "name": "to",
                            "in": "query",
                            "schema": _TIME,
                            "description": "Default: now.",
                        },
                        {
                            "name": "granularity",
                            "in": "query",
                            "schema": {"enum": ["minute", "hour", "day"], "default": "hour"},
                        },
                    ],
                    "responses": {
                        "200": _json(_ref("Usage"), "One bucket per step, empty ones too.", _RL),
                        "404": _error(["not_found"], "No such key of this owner."),
                        **_management_errors("usage:read"),
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document.",
                    "responses": {
                        "200": {
                            "description": "OpenAPI 3.1",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
        },
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
                "Retry-After": {
                    "description": "Seconds to wait.",
                    "schema": {"type": "integer"},
                },
                "WWW-Authenticate": {"schema": {"type": "string"}},
            },
            "schemas": {
                "ValidateRequest": {
                    "type": "object",
                    "properties": {
                        "key": {"type": "string"},
                        "scopes": {
                            "type": "array",
                            "maxItems": 64,
                            "items": {"type": "string", "minLength": 1, "maxLength": 64},
                            "description": "Every one must be held.",
                        },
                        "request": {
                            "type": "object",
                            "description": "What the calling service is serving; kept in usage.",
                            "properties": {
                                "method": {"type": "string", "minLength": 1, "maxLength": 16},
                                "path": {"type": "string", "minLength": 1, "maxLength": 1024},
                                "client_ip": {
                                    "type": "string",
                                    "description": "The end client's address (IPv4 or IPv6), "
                                    "checked against the key's IP allowlist instead of the "
                                    "caller's.",
                                },
                            },
                        },
                    },
                },
                "RateLimit": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["limit", "remaining", "reset"],
                    "properties": {
                        "limit": {"type": "integer"},
                        "remaining": {"type": ["integer", "null"]},
                        "reset": {"type": ["integer", "null"]},
                    },
                },
                "Quota": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["limit", "remaining", "reset"],
                    "properties": {
                        "limit": {"type": "integer", "description": "Requests per month."},
                        "remaining": {"type": "integer"},
                        "reset": {
                            "type": "integer",
                            "description": "Unix time of the next month's start (UTC).",
                        },
                    },
                },
                "Validated": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": [
                        "valid",
                        "key_id",
                        "owner_id",
                        "name",
                        "tier",
                        "scopes",
                        "expires_at",
                        "meta",
                        "test",
                        "ratelimit",
                        "remaining",
                        "quota",
                    ],
                    "properties": {
                        "valid": {"const": True},
                        "key_id": {"type": "string"},
                        "owner_id": {"type": "integer"},
                        "name": {"type": "string"},
                        "tier": {"enum": list(TIERS)},
                        "scopes": {"type": "array", "items": {"type": "string"}},
                        "expires_at": _TIME,
                        "meta": {
                            "type": ["object", "null"],
                            "description": "The owner's metadata for this key (at most 1 KiB).",
                        },
                        "test": _TEST,
                        "ratelimit": _ref("RateLimit"),
                        "remaining": {
                            "type": ["integer", "null"],
                            "description": "Requests left this month under the plan's quota "
                            "(null: no quota).",
                        },
                        "quota": {"oneOf": [_ref("Quota"), {"type": "null"}]},
                    },
                },
                "ValidateError": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["valid", "error"],
                    "properties": {
                        "valid": {"const": False},
                        "error": {"enum": list(outcomes.VALIDATION_ERRORS)},
                        "message": {"type": ["string", "null"]},
                        "missing": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "Error": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["error"],
                    "properties": {
                        "error": {"type": "string"},
                        "message": {"type": ["string", "null"]},
                        "missing": {"type": "array", "items": {"type": "string"}},
                        "successor": {"type": "string", "description": "already_rotated"},
                    },
                },
                "Key": {
                    "type": "object",
                    "required": [
                        "key_id",
                        "name",
                        "tier",
                        "scopes",
                        "status",
                        "created_at",
                        "expires_at",
                        "revoked_at",
                        "last_used_at",
                        "rotated_from",
                        "ip_allowlist",
                        "meta",
                        "rate_limit",
                        "owner_rate_limit",
                        "test",
                    ],
                    "properties": {
                        "key_id": {"type": "string"},
                        "name": {"type": "string"},
                        "tier": {"enum": list(TIERS)},
                        "scopes": {"type": "array", "items": {"type": "string"}},
                        "status": {"enum": ["active", "expiring", "expired", "revoked"]},
                        "created_at": _TIME,
                        "expires_at": _TIME,
                        "revoked_at": _NULLABLE_TIME,
                        "last_used_at": _NULLABLE_TIME,
                        "rotated_from": {"type": ["string", "null"]},
                        "ip_allowlist": {
                            "type": "array",
                            "items": {"type": "string"},
                            "description": "CIDR ranges the key works from; empty: anywhere.",
                        },
                        "meta": {"type": ["object", "null"]},
                        "rate_limit": {
                            "type": ["integer", "null"],
                            "description": "An admin's own per-minute limit (null: the tier's).",
                        },
                        "owner_rate_limit": _OWNER_LIMIT,
                        "test": _TEST,
                    },
                },
                "KeyList": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["keys"],
                    "properties": {"keys": {"type": "array", "items": _ref("Key")}},
                },
                "CreateKey": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string", "minLength": 1, "maxLength": 100},
                        "scopes": {"type": "array", "items": {"type": "string"}},
                        "lifetime_days": {"type": "integer", "minimum": 1, "default": 30},
                        "ip_allowlist": _ref("IpAllowlist"),
                        "meta": _ref("Meta"),
                        "test": {**_TEST, "default": False},
                    },
                },
                "IpAllowlist": {
                    "type": ["array", "null"],
                    "maxItems": 100,
                    "items": {"type": "string", "maxLength": 49},
                    "description": "CIDR ranges, IPv4 or IPv6 (a bare address is one host); "
                    "null or empty: from anywhere.",
                },
                "Meta": {
                    "type": ["object", "null"],
                    "description": "Any JSON object of at most 1 KiB (compact UTF-8); null "
                    "clears it. Returned by validation as `meta`.",
                },
                "Policies": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "ip_allowlist": _ref("IpAllowlist"),
                        "meta": _ref("Meta"),
                        "owner_rate_limit": _OWNER_LIMIT,
                    },
                },
                "PoliciesSet": {
                    "allOf": [
                        _ref("Key"),
                        {"required": ["changed"], "properties": {"changed": {"type": "boolean"}}},
                    ]
                },
                "GitHubAlert": {
                    "type": "array",
                    "maxItems": 1000,
                    "items": {
                        "type": "object",
                        "required": ["token"],
                        "properties": {
                            "token": {"type": "string"},
                            "type": {"type": "string"},
                            "url": {"type": "string"},
                            "source": {"type": "string"},
                        },
                    },
                },
                "GitHubFeedback": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["token_hash", "token_type", "label"],
                        "properties": {
                            "token_hash": {
                                "type": "string",
                                "description": "SHA-256 of the token, hex.",
                            },
                            "token_type": {"type": "string"},
                            "label": {"enum": ["true_positive", "false_positive"]},
                        },
                    },
                },
                "LeakReport": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["credentials"],
                    "properties": {
                        "credentials": {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": 1000,
                            "items": {"type": "string", "minLength": 1, "maxLength": 1024},
                        }
                    },
                },
                "LeakReceived": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["received"],
                    "properties": {"received": {"type": "integer"}},
                },
                "NewKey": {
                    "allOf": [
                        _ref("Key"),
                        {
                            "required": ["key"],
                            "properties": {
                                "key": {
                                    "type": "string",
                                    "description": "The secret key: shown in this answer only.",
                                }
                            },
                        },
                    ]
                },
                "Revoked": {
                    "allOf": [
                        _ref("Key"),
                        {"required": ["changed"], "properties": {"changed": {"type": "boolean"}}},
                    ]
                },
                "Rotate": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "grace": {"enum": ["now", "1h", "24h", "7d"], "default": "24h"},
                    },
                },
                "Rotated": {
                    "allOf": [
                        _ref("NewKey"),
                        {"required": ["previous"], "properties": {"previous": _ref("Key")}},
                    ]
                },
                "UsageTotals": {
                    "type": "object",
                    "required": ["count", "status", "latency_avg_ms", "latency_p95_ms"],
                    "properties": {
                        "count": {"type": "integer"},
                        "status": {
                            "type": "object",
                            "additionalProperties": {"type": "integer"},
                            "description": "Counts by status class: 2xx, 3xx, 4xx, 5xx, other.",
                        },
                        "latency_avg_ms": {"type": ["number", "null"]},
                        "latency_p95_ms": {"type": ["number", "null"]},
                    },
                },
                "UsageBucket": {
                    "allOf": [
                        _ref("UsageTotals"),
                        {"required": ["start"], "properties": {"start": _TIME}},
                    ]
                },
                "Usage": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["key_id", "granularity", "from", "to", "total", "buckets"],
                    "properties": {
                        "key_id": {"type": "string"},
                        "granularity": {"enum": ["minute", "hour", "day"]},
                        "from": _TIME,
                        "to": _TIME,
                        "total": _ref("UsageTotals"),
                        "buckets": {"type": "array", "items": _ref("UsageBucket")},
                    },
                },
            },
        },
    }
