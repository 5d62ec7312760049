"""The API's contract: pydantic models of every request and answer body.

They check the management API's bodies (`parse`), and app/api/openapi.py builds the
OpenAPI document from them, so the limits a client reads are the limits the server
applies. The validation hot path parses by hand (a model costs more than the whole
check) but takes its limits from the constants below, which these models use.
Semantic checks (scope grammar, CIDR ranges, a tier's longest lifetime) stay in
app/keys, which the portal shares.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    StringConstraints,
    ValidationError,
)

from app import outcomes
from app.config import TIERS
from app.keys import leaks, lifecycle, policies
from app.usage.queries import GRANULARITIES

# Validation (the hot path reads these; the models below document them).
MAX_REQUEST_SCOPES = 64
MAX_SCOPE_LEN = 64
MAX_METHOD_LEN = 16
MAX_PATH_LEN = 1024
MAX_TOKEN_LEN = 1024

Tier = Literal[TIERS]  # type: ignore[valid-type]
Grace = Literal[tuple(lifecycle.GRACE_PERIODS)]  # type: ignore[valid-type]
Granularity = Literal[GRANULARITIES]  # type: ignore[valid-type]
KeyStatus = Literal["active", "expiring", "expired", "revoked"]
ValidationError_ = Literal[outcomes.VALIDATION_ERRORS]  # type: ignore[valid-type]
Scope = Annotated[str, StringConstraints(min_length=1, max_length=MAX_SCOPE_LEN)]
Range = Annotated[str, StringConstraints(max_length=policies.MAX_RANGE_LEN)]
TEST_TEXT = "A test key: its own prefix, validates like any key, never billed."


class Body(BaseModel):
    """A request body: strict JSON types, no field beyond those named."""

    model_config = ConfigDict(strict=True, extra="forbid")


B = TypeVar("B", bound=BaseModel)


class Answer(BaseModel):
    """An answer body (documented; the views build them)."""

    model_config = ConfigDict(extra="forbid")


# --- requests --------------------------------------------------------------------------


class ServedRequest(Body):
    """What the calling service is serving; kept in usage."""

    method: Annotated[str, StringConstraints(min_length=1, max_length=MAX_METHOD_LEN)] | None = None
    path: Annotated[str, StringConstraints(min_length=1, max_length=MAX_PATH_LEN)] | None = None
    client_ip: str | None = Field(
        None,
        description="The end client's address (IPv4 or IPv6), checked against the key's IP "
        "allowlist instead of the caller's.",
    )


class ValidateRequest(Body):
    key: str | None = Field(None, description="Or Authorization: Bearer, or X-API-Key.")
    scopes: list[Scope] | None = Field(
        None, max_length=MAX_REQUEST_SCOPES, description="Every one must be held."
    )
    request: ServedRequest | None = None


IpAllowlist = Annotated[
    list[Range] | None,
    Field(
        max_length=policies.MAX_RANGES,
        description="CIDR ranges, IPv4 or IPv6 (a bare address is one host); null or "
        "empty: from anywhere.",
    ),
]
Meta = Annotated[
    dict[str, Any] | None,
    Field(
        description=f"Any JSON object of at most {policies.MAX_META_BYTES} bytes (compact "
        "UTF-8); null clears it. Returned by validation as `meta`."
    ),
]


class CreateKey(Body):
    name: str = Field(min_length=1, max_length=lifecycle.MAX_NAME)
    scopes: list[Scope] = Field(default_factory=list, max_length=lifecycle.MAX_SCOPES)
    lifetime_days: int = Field(
        30, ge=1, description="At most the owner's tier's longest lifetime (basic: 90)."
    )
    ip_allowlist: IpAllowlist = None
    meta: Meta = None
    test: bool = Field(False, description=TEST_TEXT)


OWNER_LIMIT_TEXT = (
    "The owner's own per-minute limit, at most the tier's (null: the tier's); an admin's "
    "rate_limit wins over it."
)


class Policies(Body):
    ip_allowlist: IpAllowlist = None
    meta: Meta = None
    owner_rate_limit: int | None = Field(None, ge=1, description=OWNER_LIMIT_TEXT)


class Rotate(Body):
    grace: Grace = "24h"


class LeakReport(Body):
    credentials: list[Annotated[str, StringConstraints(min_length=1, max_length=MAX_TOKEN_LEN)]] = (
        Field(min_length=1, max_length=leaks.MAX_REPORTED)
    )


class GitHubToken(BaseModel):
    """One token of GitHub's alert; fields GitHub may add later are ignored."""

    model_config = ConfigDict(strict=True)

    token: Annotated[str, StringConstraints(max_length=MAX_TOKEN_LEN)]
    type: str | None = None
    url: str | None = None
    source: str | None = None


class GitHubAlert(RootModel[list[GitHubToken]]):
    """GitHub secret scanning's alert: a JSON array of tokens."""

    root: list[GitHubToken] = Field(max_length=leaks.MAX_REPORTED)


class UsageQuery(Body):
    """GET /usage's query parameters."""

    key_id: str | None = Field(None, description="Default: the calling key.")
    from_: datetime | None = Field(
        None, alias="from", description="Default: `to` minus 1 h / 24 h / 30 d."
    )
    to: datetime | None = Field(None, description="Default: now.")
    granularity: Granularity = "hour"


# --- answers ---------------------------------------------------------------------------


class RateLimit(Answer):
    limit: int
    remaining: int | None
    reset: int | None


class Quota(Answer):
    limit: int = Field(description="Requests per month.")
    remaining: int
    reset: int = Field(description="Unix time of the next month's start (UTC).")


class Validated(Answer):
    valid: Literal[True]
    key_id: str
    owner_id: int
    name: str
    tier: Tier
    scopes: list[str]
    expires_at: datetime
    meta: dict[str, Any] | None = Field(description="The owner's metadata for this key.")
    test: bool = Field(description=TEST_TEXT)
    ratelimit: RateLimit
    remaining: int | None = Field(
        description="Requests left this month under the plan's quota (null: no quota)."
    )
    quota: Quota | None


class ValidateRefused(Answer):
    valid: Literal[False]
    error: ValidationError_
    message: str | None = None
    missing: list[str] | None = None


class Error(Answer):
    error: str
    message: str | None = None
    missing: list[str] | None = None
    successor: str | None = Field(None, description="already_rotated: the successor's key id.")


class Key(BaseModel):
    key_id: str
    name: str
    tier: Tier
    scopes: list[str]
    status: KeyStatus
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None
    rotated_from: str | None
    ip_allowlist: list[str] = Field(description="CIDR ranges the key works from; empty: anywhere.")
    meta: dict[str, Any] | None
    rate_limit: int | None = Field(
        description="An admin's own per-minute limit (null: the tier's)."
    )
    owner_rate_limit: int | None = Field(description=OWNER_LIMIT_TEXT)
    test: bool = Field(description=TEST_TEXT)


class KeyList(Answer):
    keys: list[Key]


class NewKey(Key):
    key: str = Field(description="The secret key: shown in this answer only.")


class Changed(Key):
    changed: bool = Field(description="False when nothing changed.")


class Rotated(NewKey):
    previous: Key


class Receipts(BaseModel):
    format: Literal["keyledger-audit-receipts/1"]
    target: str
    checkpoint: str | None
    pending: int | None = None
    receipts: list[dict[str, Any]]


class UsageTotals(BaseModel):
    count: int
    status: dict[str, int] = Field(description="Counts by status class: 2xx, 3xx, 4xx, 5xx, other.")
    latency_avg_ms: float | None
    latency_p95_ms: float | None


class UsageBucket(UsageTotals):
    start: datetime


class Usage(Answer):
    key_id: str
    granularity: Granularity
    from_: datetime = Field(alias="from")
    to: datetime
    total: UsageTotals
    buckets: list[UsageBucket]


class LeakReceived(Answer):
    received: int


class GitHubLabel(Answer):
    token_hash: str = Field(description="SHA-256 of the token, hex.")
    token_type: str
    label: Literal["true_positive", "false_positive"]


# --- checking a body -------------------------------------------------------------------


def _kind(annotation: Any) -> str:
    """What a field must be, in words, from its type."""
    text = str(get_origin(annotation) or annotation) + str(get_args(annotation))
    nullable = " or null" if type(None) in get_args(annotation) else ""
    for needle, words in (
        ("list", "a list of strings"),
        ("dict", "a JSON object"),
        ("bool", "true or false"),
        ("int", "an integer"),
        ("str", "a string"),
    ):
        if needle in text:
            return words + nullable
    return "of the documented type"


def problem(model: type[BaseModel], exc: ValidationError) -> str:
    """The first error of a refused body in one sentence that names the field."""
    err = exc.errors(include_url=False)[0]
    loc = [p for p in err["loc"] if isinstance(p, str)]
    field = ".".join(loc) or (f"item {err['loc'][0]}" if err["loc"] else "body")
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind == "list_type" and not err["loc"]:
        return "the body must be a JSON array"
    if kind in ("too_long", "too_short", "string_too_long", "string_too_short"):
        items = kind.startswith("too") and len(loc) == len(err["loc"])
        unit = "items" if items else "characters"
        bound = ctx.get("max_length") if "long" in kind else ctx.get("min_length")
        side = "at most" if "long" in kind else "at least"
        return f'"{field}" must have {side} {bound} {unit}'
    if kind in ("greater_than_equal", "less_than_equal"):
        side = "at least" if kind == "greater_than_equal" else "at most"
        return f'"{field}" must be {side} {ctx.get("ge", ctx.get("le"))}'
    if kind == "literal_error":
        return f'"{field}" must be one of {ctx.get("expected", "")}'.replace("'", "")
    if kind == "extra_forbidden":
        return f"unknown field(s): {field}"
    info = model.model_fields.get(loc[0]) if loc else None
    if info is None and loc:  # a field of a nested model
        return f'"{field}" is required' if kind == "missing" else f'"{field}": {err["msg"]}'
    return f'"{field}" must be {_kind(info.annotation) if info else "a JSON object"}'


def parse(model: type[B], body: Any) -> B | str:
    """The body as `model`, or the sentence that says what is wrong with it."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        return problem(model, exc)
