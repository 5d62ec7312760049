"""The OpenAPI 3.1 document of the JSON API, served at /api/v1/openapi.json.

Written by hand next to the views it describes; tests/api/test_openapi.py validates
real answers against it, so the two cannot drift apart unnoticed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.config import TIERS

_TIME = {"type": "string", "format": "date-time"}
_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
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
        "403": _error(["insufficient_scope"], f"The key lacks `{scope}` (see `missing`).", _RL),
        "413": _error(["payload_too_large"], "Body over 16 KiB."),
        "429": _error(
            ["rate_limited"],
            "Over the key's tier limit (with X-RateLimit-*), or too many failed guesses "
            "from this address.",
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
                        "403": _json(_ref("ValidateError"), "insufficient_scope.", _RL),
                        "413": _json(_ref("ValidateError"), "Body over 16 KiB."),
                        "429": _json(
                            _ref("ValidateError"),
                            "rate_limited: over the key's tier limit (with X-RateLimit-*), "
                            "or too many failed guesses from this address.",
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
                        "409": _error(["conflict"], "Only a live key can be rotated."),
                        **_management_errors("keys:write"),
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
                        "ratelimit",
                    ],
                    "properties": {
                        "valid": {"const": True},
                        "key_id": {"type": "string"},
                        "owner_id": {"type": "integer"},
                        "name": {"type": "string"},
                        "tier": {"enum": list(TIERS)},
                        "scopes": {"type": "array", "items": {"type": "string"}},
                        "expires_at": _TIME,
                        "ratelimit": _ref("RateLimit"),
                    },
                },
                "ValidateError": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["valid", "error"],
                    "properties": {
                        "valid": {"const": False},
                        "error": {
                            "enum": [
                                "bad_request",
                                "payload_too_large",
                                "malformed_key",
                                "invalid_key",
                                "revoked",
                                "expired",
                                "insufficient_scope",
                                "rate_limited",
                                "unavailable",
                            ]
                        },
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
                    },
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
