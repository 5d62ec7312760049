"""Who is calling the API: the presented key, resolved once per request and kept on `g`.

The first view or hook that asks resolves it: the body is read and checked, the key
looked up (per-process cache) and, once identified, charged to both rate limits in
one storage round trip (app/ratelimit.py). Bad input is captured as an answer
(status, error), never raised; only an unreachable database or limit storage raises
(answered 503 by app/api/hooks.py).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Request, current_app, g, request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.sansio.utils import get_content_length

from app import outcomes, ratelimit
from app.api import schemas
from app.extensions import db
from app.keys import lifecycle, policies
from app.keys.cache import KeyCache, KeyRecord
from app.usage.store import UNSTORABLE
from app.web import client_ip, key_policy

MAX_BODY = 16 * 1024
# The limits of app/api/schemas.py's ValidateRequest, which the OpenAPI document shows;
# parsed here by hand, as a model would cost more than the whole check.
MAX_REQUEST_SCOPES = schemas.MAX_REQUEST_SCOPES
MAX_SCOPE_LEN = schemas.MAX_SCOPE_LEN
MAX_METHOD_LEN = schemas.MAX_METHOD_LEN
MAX_PATH_LEN = schemas.MAX_PATH_LEN
VALIDATE_ENDPOINT = "api.validate"
# Answers that mean "this could be a guess": they spend the client IP's failure budget.
GUESS_ERRORS = frozenset(o.code for o in outcomes.OUTCOMES.values() if o.guess)
# What a served request's method may be: an HTTP token (RFC 9110), so the stored upper
# case is ASCII of the same length ("ß".upper() is "SS" and would overrun the column).
_METHOD = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


@dataclass(slots=True)
class ApiAuth:
    started: float
    # The app, looked up once by _resolve: the view and the after-request hook read
    # it from here rather than through `current_app` (a few calls per read).
    app: Flask
    status: int = 0  # 0 while nothing is wrong; else the HTTP status to answer with
    error: str | None = None
    message: str | None = None
    key: KeyRecord | None = None  # identified: the secret matched (live or not)
    public_id: str | None = None  # well-formed key, for the audit trail
    body: dict[str, Any] = field(default_factory=dict)
    retry_after: int | None = None
    charge: ratelimit.Charge | None = None  # the key's limit, for the X-RateLimit headers
    ip: str | None = None  # the client's address (after ProxyFix)
    validating: bool = False  # POST /keys/validate, not a management call
    missing: list[str] | None = None  # insufficient_scope: what was asked and not held
    # The address the key's IP allowlist is checked against: `request.client_ip` as the
    # calling service reports it (validation), else the caller's own.
    client: policies.Address | None = None

    def fail(self, status: int, error: str, message: str | None = None) -> ApiAuth:
        self.status, self.error, self.message = status, error, message
        return self

    def refuse(self, code: str, message: str | None = None) -> ApiAuth:
        """Fail with a catalogued outcome (app/outcomes.py): its status, and its message
        unless a more precise one is given."""
        outcome = outcomes.OUTCOMES[code]
        return self.fail(outcome.status, code, message or outcome.message)


def key_cache(app: Flask | None = None) -> KeyCache:
    return (app or current_app).extensions["keyledger.key_cache"]


def current_auth() -> ApiAuth:
    auth: ApiAuth | None = g.get("kl_auth")
    if auth is None:
        auth = g.kl_auth = _resolve()
    return auth


def _resolve() -> ApiAuth:
    # The request and the app looked up once: each read through Flask's proxies costs
    # a few calls (docs/performance.md, "Fewer calls per validation").
    req = request._get_current_object()  # type: ignore[attr-defined]
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    validating = req.endpoint == VALIDATE_ENDPOINT
    auth = ApiAuth(time.perf_counter(), app, ip=client_ip(), validating=validating)
    req.max_content_length = MAX_BODY  # every API body, chunked ones too
    if validating and not _read_body(auth, req):
        return auth
    presented = _presented_keys(auth.body if validating else None, req.environ)
    if not presented:
        if validating:
            return auth.refuse(
                "bad_request",
                'no key given: send {"key": "..."}, Authorization: Bearer <key> or X-API-Key',
            )
        return auth.refuse("missing_key")
    if any(p != presented[0] for p in presented[1:]):
        return auth.refuse("bad_request", "two different keys were given; send one")
    if validating and not _check_fields(auth):
        return auth

    ip = auth.ip
    retry = ratelimit.known_blocked(ip)
    if retry is not None:
        return _blocked(auth, retry)
    cache = key_cache(app)
    policy = key_policy(app)
    seen = cache.stamp  # what this key's record is read under (see cache.observe)
    result = lifecycle.validate(db.session, policy, presented[0], cache=cache)
    if _refused_ip(auth, result):
        # Not charged: someone holding a leaked key outside the allowlist cannot spend
        # its owner's minute or month (audited as key.validation_failed). An address
        # whose guesses are spent still gets the guessers' 429, right key or wrong.
        retry = ratelimit.failures_exhausted(ip)
        if retry is not None:
            return _blocked(auth, retry)
        auth.public_id = result.public_id
        return auth.refuse("ip_not_allowed")
    if result.key is not None and not result.valid:
        # Identified but dead (revoked, expired, owner disabled): answered as such before
        # any limit, and charged to neither: a revoked key over its limit said
        # "rate_limited" for up to a minute, and its refusals spent its budget.
        auth.key, auth.public_id = result.key, result.public_id  # its usage: a 401
        return auth.refuse(result.error or "invalid_key")
    if result.key is not None:  # identified: one storage round trip for both limits
        charged = ratelimit.charge(ip, result.key)
        if charged.ip_retry is not None:
            return _blocked(auth, charged.ip_retry)  # the same answer as for a wrong guess
        if cache.observe(charged.stamp, seen):
            # Keys changed somewhere since this worker last looked (app/keys/cache.py):
            # look again in a fresh transaction, as a SQLite snapshot may predate it.
            db.session.rollback()
            result = lifecycle.validate(db.session, policy, presented[0], cache=cache)
            if result.key is None:  # deleted meanwhile
                auth.public_id = result.public_id
                return auth.refuse("invalid_key")
            if _refused_ip(auth, result):  # its allowlist changed meanwhile
                auth.public_id = result.public_id
                return auth.refuse("ip_not_allowed")
        auth.key, auth.public_id, auth.charge = result.key, result.public_id, charged
        if not charged.allowed:
            auth.retry_after = charged.retry_after()
            if charged.quota_exceeded:
                return auth.refuse("quota_exceeded")
            return auth.refuse("rate_limited")
    else:
        retry = ratelimit.failures_exhausted(ip)
        if retry is not None:
            return _blocked(auth, retry)
        if result.error in GUESS_ERRORS and not ratelimit.spend_failure(ip):
            # Other workers spent the budget meanwhile: the atomic hit decides, so N
            # workers together answer exactly the configured number of failed guesses.
            return _blocked(auth, ratelimit.failures_exhausted(ip) or 1)
        auth.public_id = result.public_id
    if not result.valid:
        auth.refuse(result.error or "invalid_key")
    return auth


def _blocked(auth: ApiAuth, retry: int) -> ApiAuth:
    auth.retry_after = retry
    return auth.refuse("rate_limited", outcomes.GUESSES_SPENT)


def _refused_ip(auth: ApiAuth, result: lifecycle.Validation) -> bool:
    """A live key with an IP allowlist, asked from (or for) an address outside it."""
    record = result.key
    if not result.valid or record is None or not record.ip_networks:
        return False
    client = auth.client
    if client is None:
        client = auth.client = policies.client_address(auth.ip)
    return not policies.ip_allowed(record.ip_networks, client)


def _read_body(auth: ApiAuth, request: Request) -> bool:
    # From the environ: werkzeug's header view raises and catches a KeyError for each
    # absent header (Transfer-Encoding, usually), on every validation (docs/performance.md,
    # "Body and headers from the WSGI environ").
    environ = request.environ
    length = get_content_length(
        environ.get("CONTENT_LENGTH"), environ.get("HTTP_TRANSFER_ENCODING")
    )
    if length is not None and length > MAX_BODY:
        auth.refuse("payload_too_large", f"the body is limited to {MAX_BODY} bytes")
        return False
    try:
        if length is not None:
            # The server bounds wsgi.input to Content-Length, so werkzeug's stream
            # wrapper around it is work a validation need not pay (docs/performance.md,
            # "Body and headers from the WSGI environ"). Nothing else reads the body.
            raw = environ["wsgi.input"].read(length)
        else:  # chunked: werkzeug enforces max_content_length while reading
            raw = request.get_data(cache=True)
    except RequestEntityTooLarge:
        auth.refuse("payload_too_large", f"the body is limited to {MAX_BODY} bytes")
        return False
    if not raw.strip():
        return True
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        auth.refuse("bad_request", "the body is not JSON")
        return False
    if not isinstance(body, dict):
        auth.refuse("bad_request", "the body must be a JSON object")
        return False
    auth.body = body
    return True


def _presented_keys(body: dict[str, Any] | None, environ: dict[str, Any]) -> list[object]:
    """The keys the request presents: in the body, as a bearer token, as X-API-Key.
    From the environ, not request.headers: see _read_body."""
    found: list[object] = []
    if body and "key" in body:
        found.append(body["key"])
    header = environ.get("HTTP_AUTHORIZATION")
    if header:
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() == "bearer":
            found.append(credentials.strip())
    x_key = environ.get("HTTP_X_API_KEY")
    if x_key is not None:
        found.append(x_key.strip())
    return found


def _check_fields(auth: ApiAuth) -> bool:
    scopes = auth.body.get("scopes")
    if scopes is not None and not (
        isinstance(scopes, list)
        and len(scopes) <= MAX_REQUEST_SCOPES
        and all(isinstance(s, str) and 0 < len(s) <= MAX_SCOPE_LEN for s in scopes)
    ):
        auth.refuse(
            "bad_request",
            f'"scopes" must be a list of at most {MAX_REQUEST_SCOPES} non-empty strings '
            f"of at most {MAX_SCOPE_LEN} characters",
        )
        return False
    served = auth.body.get("request")
    if served is None:
        return True
    if not isinstance(served, dict):
        auth.refuse("bad_request", '"request" must be an object {"method", "path", "client_ip"}')
        return False
    reported = served.get("client_ip")
    if reported is not None:
        auth.client = policies.client_address(reported)
        if auth.client is None:
            auth.refuse("bad_request", '"request.client_ip" must be an IPv4 or IPv6 address')
            return False
    method, path = served.get("method"), served.get("path")
    if method is not None and not (
        isinstance(method, str) and len(method) <= MAX_METHOD_LEN and _METHOD.fullmatch(method)
    ):
        auth.refuse(
            "bad_request",
            f'"request.method" must be an HTTP method of 1-{MAX_METHOD_LEN} ASCII letters',
        )
        return False
    # A path the usage columns cannot hold is refused here, never answered valid and
    # then dropped at the flush (the key holder would validate without being billed).
    if path is not None and not (
        isinstance(path, str) and 0 < len(path) <= MAX_PATH_LEN and not UNSTORABLE.search(path)
    ):
        auth.refuse(
            "bad_request",
            f'"request.path" must be a string of 1-{MAX_PATH_LEN} characters without '
            "control characters",
        )
        return False
    return True
