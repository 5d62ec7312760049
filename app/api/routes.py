"""The JSON API: key validation (the hot path) and key management by API key.

Every view is thin: authentication happens once per request in app/api/auth.py (the
rate limiter triggers it), the work in app/keys and app/usage.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import wraps
from typing import Any

from flask import Flask, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from flask.wrappers import Response
from sqlalchemy import select

from app import limiter, text, times
from app.api import bp, schemas
from app.api.auth import ApiAuth, current_auth, key_cache
from app.api.errors import api_error
from app.api.state import MAX_HEADS, api_state
from app.audit import service as audit_service
from app.extensions import db
from app.keys import delegation, lifecycle, policies
from app.keys.cache import KeyRecord
from app.models import ApiKey, User
from app.models._types import utcnow
from app.web import client_ip, key_policy


def auth_error(auth: ApiAuth, *, validating: bool) -> Response:
    """The answer to a request whose key was refused (status and code from app/outcomes)."""
    # The contract's 401 bodies of validation are exactly {"valid": false, "error": ...}.
    message = None if validating and auth.status == 401 else auth.message
    response = api_error(auth.status, auth.error, message, validating=validating)
    if auth.retry_after is not None:
        response.headers["Retry-After"] = str(auth.retry_after)
    if auth.status == 401 and not validating:
        response.headers["WWW-Authenticate"] = 'Bearer realm="keyledger"'
    return response


@bp.route("/keys/validate", methods=["POST"])
def validate() -> ResponseReturnValue:
    """Is this key live, and does it hold these scopes? See docs/api.md for the contract."""
    auth = current_auth()
    if auth.status:
        return auth_error(auth, validating=True)
    record = auth.key
    assert record is not None
    wanted = auth.body.get("scopes") or ()
    missing = [s for s in dict.fromkeys(wanted) if s not in record.scopes]
    if missing:
        # Checked only here: a scope holding a refused character is never held, so the
        # success path pays nothing for it.
        unsafe = next(filter(None, map(text.problem, missing)), None)
        if unsafe is not None:
            auth.refuse("bad_request", f'"scopes" {unsafe}')
            return auth_error(auth, validating=True)
        auth.refuse("insufficient_scope")
        auth.missing = missing
        body = {"valid": False, "error": auth.error, "missing": missing}
        return jsonify(body), 403
    charged = auth.charge
    assert charged is not None  # every identified key was charged
    if charged.quota is None:
        quota = '"remaining":null,"quota":null'
    else:
        quota = (
            f'"remaining":{charged.quota_remaining},"quota":{{"limit":{charged.quota},'
            f'"remaining":{charged.quota_remaining},"reset":{charged.quota_reset}}}'
        )
    app = auth.app
    body = (
        f'{_valid_head(app, record)},"ratelimit":{{"limit":{charged.limit},'
        f'"remaining":{charged.remaining},"reset":{charged.reset}}},{quota}}}\n'
    )
    return app.response_class(body, mimetype="application/json")


def _valid_head(app: Flask, record: KeyRecord) -> str:
    """The 200 body's fixed part, open for "ratelimit": what changes between two
    validations of a key is its rate-limit numbers (cached per app, app/api/state.py)."""
    heads = api_state(app).heads
    hit = heads.get(id(record))
    if hit is not None and hit[0] is record:
        return hit[1]
    fixed = {
        "valid": True,
        "key_id": record.public_id,
        "owner_id": record.user_id,
        "name": record.name,
        "tier": record.tier,
        "scopes": list(record.scopes),
        "expires_at": times.iso_or_none(record.expires_at),
        "meta": record.meta,
        "test": record.test,
    }
    head = json.dumps(fixed, separators=(",", ":"))[:-1]  # open: "ratelimit" follows
    if len(heads) > MAX_HEADS:
        heads.clear()
    heads[id(record)] = (record, head)
    return head


# --- management, authenticated by API keys -------------------------------------------


def key_required(scope: str) -> Callable[[Callable[..., ResponseReturnValue]], Any]:
    """Answer 401/429 for a missing or failed key, 403 without `scope`; else pass it on."""

    def decorate(view: Callable[..., ResponseReturnValue]) -> Callable[..., ResponseReturnValue]:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> ResponseReturnValue:
            auth = current_auth()
            if auth.status:
                return auth_error(auth, validating=False)
            record = auth.key
            assert record is not None
            if scope not in record.scopes:
                auth.refuse("insufficient_scope", f"this needs a key with the {scope} scope")
                auth.missing = [scope]
                return api_error(403, "insufficient_scope", auth.message or "", missing=[scope])
            return view(record, *args, **kwargs)

        return wrapper

    return decorate


def _owner(record: KeyRecord) -> User:
    owner = db.session.get(User, record.user_id)
    assert owner is not None  # keys cannot outlive their owner (foreign key)
    return owner


def _body(model: type[schemas.B], hints: dict[str, str] | None = None) -> schemas.B | Response:
    """The request's JSON object (empty body: {}) checked against `model`
    (app/api/schemas.py), or the 400 that says what is wrong with it. `hints` adds a
    word on why for a field a caller might expect to set here."""
    raw = request.get_data(cache=True)
    body: Any = {}
    if raw.strip():
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            return api_error(400, "bad_request", "the body is not JSON")
    if not isinstance(body, dict):
        return api_error(400, "bad_request", "the body must be a JSON object")
    unsafe = text.unsafe_json(body)
    if unsafe is not None:
        return api_error(400, "bad_request", unsafe)
    allowed = {f.alias or name for name, f in model.model_fields.items()}
    unknown = sorted(set(body) - allowed)
    if unknown:
        hint = next((h for field, h in (hints or {}).items() if field in unknown), "")
        return api_error(400, "bad_request", f"unknown field(s): {', '.join(unknown)}{hint}")
    parsed = schemas.parse(model, body)
    if isinstance(parsed, str):
        return api_error(400, "bad_request", parsed)
    return parsed


def key_json(key: ApiKey, public_ids: dict[int, str] | None = None) -> dict[str, Any]:
    rotated_from = None
    if key.rotated_from_id is not None:
        rotated_from = (public_ids or {}).get(key.rotated_from_id) or db.session.scalar(
            select(ApiKey.public_id).where(ApiKey.id == key.rotated_from_id)
        )
    return {
        "key_id": key.public_id,
        "name": key.name,
        "tier": key.tier,
        "scopes": list(key.scopes),
        "status": lifecycle.status(key, key_policy()),
        "created_at": times.iso_or_none(key.created_at),
        "expires_at": times.iso_or_none(key.expires_at),
        "revoked_at": times.iso_or_none(key.revoked_at),
        "last_used_at": times.iso_or_none(key.last_used_at),
        "rotated_from": rotated_from,
        "test": key.test,
        **policies.describe(key),
    }


def _secret_response(new: lifecycle.NewKey, status: int, **extra: Any) -> Response:
    response = jsonify({"key": new.plaintext, **key_json(new.key), **extra})
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response


def caller(record: KeyRecord) -> delegation.Caller:
    """The calling key as app/keys/delegation.py weighs it."""
    return delegation.Caller(record.scopes, record.expires_at, record.ip_networks)


def beyond_caller(exc: delegation.BeyondCaller) -> Response:
    """The 403 of a request that would give a key more than the calling key has."""
    if isinstance(exc, delegation.MissingScopes):
        return api_error(403, "insufficient_scope", str(exc), missing=exc.missing)
    return api_error(403, "ip_not_allowed", str(exc))


def _own_key(record: KeyRecord, public_id: str) -> ApiKey | Response:
    """The caller's owner's key, or 404 (someone else's is audited as critical)."""
    key = lifecycle.find_own_key(db.session, _owner(record), public_id, actor_ip=client_ip())
    if key is None:
        return api_error(404, "not_found", "no such key")
    return key


@bp.route("/keys", methods=["GET"])
@key_required("keys:read")
def list_keys(record: KeyRecord) -> ResponseReturnValue:
    keys = db.session.scalars(
        select(ApiKey)
        .where(ApiKey.user_id == record.user_id)
        .order_by(ApiKey.created_at.desc(), ApiKey.id.desc())
    ).all()
    # A predecessor always has the same owner, so it is in this list.
    public_ids = {k.id: k.public_id for k in keys}
    return jsonify({"keys": [key_json(k, public_ids) for k in keys]})


@bp.route("/keys", methods=["POST"])
@key_required("keys:write")
def create_key(record: KeyRecord) -> ResponseReturnValue:
    """Scopes rule: a key may only grant scopes it holds itself. Tier and lifetime cap
    are always the owner's (a key has no tier of its own)."""
    body = _body(schemas.CreateKey, {"tier": " (a key's tier is always its owner's)"})
    if isinstance(body, Response):
        return body
    owner = _owner(record)
    by = caller(record)
    try:  # checked before anything is made: a bad scope or policy creates no key
        scopes = lifecycle.clean_scopes(body.scopes)
        allowlist = policies.clean_allowlist(body.ip_allowlist)
        meta = policies.clean_meta(body.meta)
        lifecycle.check_lifetime(key_policy(), owner.tier, body.lifetime_days)
        # Never beyond the calling key: its scopes, its expiry, its allowlist.
        delegation.check_scopes(by, scopes, granting=True)
        allowlist = delegation.child_allowlist(by, allowlist)
        asked = "lifetime_days" in body.model_fields_set
        not_after = delegation.not_after(by, utcnow(), body.lifetime_days, asked=asked)
    except delegation.BeyondCaller as exc:
        return beyond_caller(exc)
    except lifecycle.KeyRequestError as exc:
        return api_error(400, "bad_request", str(exc))
    try:
        new = lifecycle.create_key(
            db.session,
            key_policy(),
            owner,
            name=body.name,
            scopes=scopes,
            lifetime_days=body.lifetime_days,
            actor_ip=client_ip(),
            test=body.test,
            not_after=not_after,
        )
    except lifecycle.KeyRequestError as exc:
        db.session.rollback()
        return api_error(400, "bad_request", str(exc))
    if allowlist or meta is not None:
        policies.set_policies(
            db.session,
            new.key,
            ip_allowlist=allowlist,
            meta=meta,
            actor=owner,
            actor_ip=client_ip(),
        )
    return _secret_response(new, 201)


@bp.route("/keys/<key_id>/revoke", methods=["POST"])
@key_required("keys:write")
def revoke_key(record: KeyRecord, key_id: str) -> ResponseReturnValue:
    key = _own_key(record, key_id)
    if isinstance(key, Response):
        return key
    changed = lifecycle.revoke_key(db.session, key, actor=_owner(record), actor_ip=client_ip())
    key_cache().forget(key.public_id)
    return jsonify({**key_json(key), "changed": changed})


@bp.route("/keys/<key_id>/receipts", methods=["GET"])
@key_required("keys:read")
def key_receipts(record: KeyRecord, key_id: str) -> ResponseReturnValue:
    """Each lifecycle event of the key with its inclusion proof (docs/audit.md)."""
    key = _own_key(record, key_id)
    if isinstance(key, Response):
        return key
    return jsonify(audit_service.receipts_for_key(key.public_id))


@bp.route("/keys/<key_id>/rotate", methods=["POST"])
@key_required("keys:write")
def rotate_key(record: KeyRecord, key_id: str) -> ResponseReturnValue:
    body = _body(schemas.Rotate)
    if isinstance(body, Response):
        return body
    grace = body.grace
    key = _own_key(record, key_id)
    if isinstance(key, Response):
        return key
    by = caller(record)
    try:  # the caller receives the successor's secret: never a key beyond itself
        delegation.check_rotation(by, key.scopes, key.ip_allowlist)
    except delegation.BeyondCaller as exc:
        return beyond_caller(exc)
    try:
        new = lifecycle.rotate_key(
            db.session,
            key_policy(),
            key,
            grace=grace,
            actor=_owner(record),
            actor_ip=client_ip(),
            not_after=by.expires_at,
        )
    except lifecycle.AlreadyRotated as exc:
        db.session.rollback()
        return api_error(409, "already_rotated", str(exc), successor=exc.successor)
    except lifecycle.KeyRequestError as exc:
        db.session.rollback()
        return api_error(409, "conflict", str(exc))
    key_cache().forget(key.public_id)
    return _secret_response(new, 201, previous=key_json(key))


DEFAULT_SPAN = {"minute": timedelta(hours=1), "hour": timedelta(hours=24), "day": timedelta(30)}


def _parse_time(text: str | None, name: str) -> datetime | Response | None:
    if text is None or text == "":
        return None
    try:
        # An unencoded '+' of the zone arrives as a space in a query string.
        at = times.parse_iso(text.replace(" ", "+"))
    except ValueError:
        return api_error(400, "bad_request", f'"{name}" must be an ISO 8601 time')
    if at.tzinfo is None:
        return api_error(400, "bad_request", f'"{name}" needs a timezone, e.g. Z')
    return at


@bp.route("/usage", methods=["GET"])
@key_required("usage:read")
def usage(record: KeyRecord) -> ResponseReturnValue:
    from app.usage import queries

    args = request.args
    granularity = args.get("granularity", "hour")
    if granularity not in queries.GRANULARITIES:
        return api_error(
            400, "bad_request", f"granularity must be one of {', '.join(queries.GRANULARITIES)}"
        )
    start, end = _parse_time(args.get("from"), "from"), _parse_time(args.get("to"), "to")
    for parsed in (start, end):
        if isinstance(parsed, Response):
            return parsed
    assert not isinstance(start, Response) and not isinstance(end, Response)
    end = end or times.now()
    start = start or end - DEFAULT_SPAN[granularity]
    key = _own_key(record, args.get("key_id") or record.public_id)
    if isinstance(key, Response):
        return key
    try:
        buckets = queries.series(db.session, key, start, end, granularity)
    except (queries.UsageQueryError, OverflowError) as exc:
        return api_error(400, "bad_request", str(exc))
    total = queries.summary(buckets).to_dict()
    del total["start"]
    return jsonify(
        {
            "key_id": key.public_id,
            "granularity": granularity,
            "from": times.iso(buckets[0].start if buckets else start),
            "to": times.iso(buckets[-1].start + queries.STEP[granularity] if buckets else end),
            "total": total,
            "buckets": [b.to_dict() for b in buckets],
        }
    )


@bp.route("/openapi.json", methods=["GET"])
@limiter.exempt
def openapi() -> ResponseReturnValue:
    from app.api.openapi import document

    return jsonify(document(current_app.config))
