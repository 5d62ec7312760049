"""The catalogue of validation outcomes: every answer the key-authenticated API gives,
defined once (Unkey's one key-status type is the model).

The API's status and message, the owner's sentence (dashboard, key page), the admin's
label and chart colour (security view), the status class the usage charts count it in,
how it is audited, and the OpenAPI enum of error codes all come from `OUTCOMES`:
adding an outcome is one entry here. Plain data, no Flask: domain modules and the
offline tools import it freely.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ChartClass:
    """A status class of the usage charts (roll-up columns), with its legend and colour."""

    name: str
    label: str
    colour: str
    always: bool = True  # shown in every legend; else only when it occurs


# The outcome split every usage chart shows. "4xx" is the rest of 4xx once refused
# credentials (401/403) and rate limits (429) are counted apart.
CHART_CLASSES: dict[str, ChartClass] = {
    c.name: c
    for c in (
        ChartClass("2xx", "Succeeded (2xx)", "#1a7f46"),
        ChartClass("3xx", "Redirected (3xx)", "#2f5fd0", always=False),
        ChartClass("4xx", "Client error (other 4xx)", "#b7791f"),
        ChartClass("401/403", "Refused (401/403)", "#7c3aed"),
        ChartClass("429", "Rate limited (429)", "#c2410c"),
        ChartClass("5xx", "Server error (5xx)", "#b42318"),
        ChartClass("other", "Other status", "#6b7280", always=False),
    )
}


@dataclass(frozen=True, slots=True)
class Outcome:
    """One answer of the API. `audit` is the audit action that records it (None: only
    usage counts it) and `audit_outcome` that event's outcome."""

    code: str
    status: int
    message: str  # the API's `message`
    owner_text: str  # what it means to the key's owner (dashboard, key page)
    admin_label: str  # the security view's legend
    chart_class: str  # a CHART_CLASSES name: where the usage charts count it
    colour: str  # its own colour where charts split by outcome
    audit: str | None = None
    audit_outcome: str | None = None
    guess: bool = False  # could be a guess: spends the client IP's failure budget
    validation: bool = True  # answered by POST /keys/validate (else management calls only)


OUTCOMES: dict[str, Outcome] = {
    o.code: o
    for o in (
        Outcome(
            "valid",
            200,
            "the key is live and holds every scope asked for",
            "Accepted",
            "Valid",
            "2xx",
            "#1a7f46",
            audit="key.validated",
            audit_outcome="success",
        ),
        Outcome(
            "malformed_key",
            401,
            "this is not a Keyledger key (shape, length or checksum is wrong)",
            "The key was not in Keyledger's format",
            "Malformed key",
            "401/403",
            "#b7791f",
            audit="key.validation_failed",
            audit_outcome="failure",
            guess=True,
        ),
        Outcome(
            "invalid_key",
            401,
            "no live key matches",
            "Wrong secret for this key ID",
            "Invalid key",
            "401/403",
            "#b42318",
            audit="key.validation_failed",
            audit_outcome="failure",
            guess=True,
        ),
        Outcome(
            "revoked",
            401,
            "this key was revoked",
            "The key was revoked",
            "Revoked key",
            "401/403",
            "#6b7280",
            audit="key.validation_failed",
            audit_outcome="failure",
        ),
        Outcome(
            "expired",
            401,
            "this key has expired",
            "The key had expired",
            "Expired key",
            "401/403",
            "#0e7490",
            audit="key.validation_failed",
            audit_outcome="failure",
        ),
        Outcome(
            "insufficient_scope",
            403,
            "the key does not hold every scope asked for",
            "The key lacks a scope the request needs",
            "Missing scope",
            "401/403",
            "#7c3aed",
            audit="key.validation_failed",
            audit_outcome="denied",
        ),
        Outcome(
            "ip_not_allowed",
            403,
            "this key does not work from this address (its IP allowlist)",
            "Called from an address outside the key's IP allowlist",
            "Outside IP allowlist",
            "401/403",
            "#be185d",
            audit="key.validation_failed",
            audit_outcome="denied",
        ),
        Outcome(
            "rate_limited",
            429,
            "this key is over its rate limit",
            "Over the key's per-minute rate limit",
            "Rate limited",
            "429",
            "#c2410c",
            audit="key.rate_limited",
            audit_outcome="denied",
        ),
        Outcome(
            "quota_exceeded",
            429,
            "this key's monthly request quota is spent; it resets at the month's start (UTC)",
            "The plan's monthly request quota was spent",
            "Quota spent",
            "429",
            "#9a3412",
        ),
        Outcome(
            "missing_key",
            401,
            "send your API key as Authorization: Bearer <key> or X-API-Key",
            "No key was sent",
            "No key",
            "401/403",
            "#4b5563",
            validation=False,
        ),
        Outcome(
            "bad_request",
            400,
            "the request is not what the API expects",
            "The request was malformed",
            "Bad request",
            "4xx",
            "#a16207",
        ),
        Outcome(
            "payload_too_large",
            413,
            "the body is too large",
            "The request body was too large",
            "Body too large",
            "4xx",
            "#854d0e",
        ),
        Outcome(
            "unavailable",
            503,
            "a backing service is unreachable; retry shortly",
            "The service was briefly unavailable",
            "Unavailable",
            "5xx",
            "#b42318",
        ),
    )
}

# The 429 for an address whose failed guesses are spent: rate_limited, another cause.
GUESSES_SPENT = "too many failed validations from this address; wait and retry"
AUDITED_FAILURES = frozenset(
    o.code for o in OUTCOMES.values() if o.audit == "key.validation_failed"
)
# Audit actions that record a refused validation, and the outcome each implies.
REFUSAL_ACTIONS = {"key.validation_failed": None, "key.rate_limited": "rate_limited"}
ERROR_CODES = tuple(c for c, o in OUTCOMES.items() if o.status >= 400)
# The `error` enum of the validation endpoint's refusals (the OpenAPI document's).
VALIDATION_ERRORS = tuple(c for c in ERROR_CODES if OUTCOMES[c].validation)
UNKNOWN = Outcome("unknown", 0, "", "Unrecorded reason", "Other", "other", "#6b7280")


def get(code: str | None) -> Outcome:
    """The outcome of a code; an unknown one (an old or hand-made record) reads as such."""
    return OUTCOMES.get(code or "", UNKNOWN)


def message(code: str) -> str:
    return OUTCOMES[code].message


def of_event(action: str, details: str | dict[str, Any] | None) -> Outcome:
    """The outcome an audit event of a refused validation records: its `error` detail,
    else what the action implies (a key.rate_limited event is rate_limited)."""
    if isinstance(details, str):
        try:
            details = json.loads(details)
        except ValueError:
            details = None
    error = details.get("error") if isinstance(details, dict) else None
    if isinstance(error, str) and error in OUTCOMES:
        return OUTCOMES[error]
    return get(REFUSAL_ACTIONS.get(action))


def chart_classes() -> list[dict[str, str]]:
    """The usage charts' legend, for their JSON: the JavaScript draws from this."""
    return [
        {"name": c.name, "label": c.label, "colour": c.colour, "always": c.always}
        for c in CHART_CLASSES.values()
    ]


def style(name: str) -> dict[str, str]:
    """A chart series' legend and colour when it is named after a status class or an
    outcome code; {} otherwise (the chart's own colours apply)."""
    if name in CHART_CLASSES:
        c = CHART_CLASSES[name]
        return {"label": c.label, "colour": c.colour}
    if name in OUTCOMES:
        o = OUTCOMES[name]
        return {"label": o.admin_label, "colour": o.colour}
    return {}
