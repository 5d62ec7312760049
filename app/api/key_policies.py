"""PATCH /keys/{key_id}/policies: the owner sets a key's IP allowlist, metadata and own
rate limit (at or below the tier's)."""

from __future__ import annotations

from flask import current_app, jsonify
from flask.typing import ResponseReturnValue
from flask.wrappers import Response

from app import ratelimit
from app.api import bp, schemas
from app.api.errors import api_error
from app.api.routes import (
    _body,
    _own_key,
    _owner,
    beyond_caller,
    caller,
    key_json,
    key_required,
)
from app.extensions import db
from app.keys import delegation, lifecycle, policies
from app.keys.cache import KeyRecord
from app.web import client_ip


@bp.route("/keys/<key_id>/policies", methods=["PATCH"])
@key_required("keys:write")
def set_key_policies(record: KeyRecord, key_id: str) -> ResponseReturnValue:
    """Fields given replace the key's (null clears one), fields left out stay; a bad
    one is a 400 and changes nothing. `owner_rate_limit` is the owner's own limit, at or
    below the tier's; `rate_limit` is an admin's, not here."""
    body = _body(
        schemas.Policies,
        {"rate_limit": " (an admin's limit; the owner's own one is owner_rate_limit)"},
    )
    if isinstance(body, Response):
        return body
    given = body.model_fields_set  # a field left out stays; null clears it
    key = _own_key(record, key_id)
    if isinstance(key, Response):
        return key
    limit = body.owner_rate_limit if "owner_rate_limit" in given else policies.UNSET
    by = caller(record)
    try:  # a key changes only keys within itself, and never widens their allowlist
        delegation.check_scopes(by, key.scopes, granting=False)
        if "ip_allowlist" in given:
            new_allowlist = policies.clean_allowlist(body.ip_allowlist)
            delegation.check_allowlist_change(by, key.ip_allowlist, new_allowlist)
    except delegation.BeyondCaller as exc:
        return beyond_caller(exc)
    except lifecycle.KeyRequestError as exc:
        return api_error(400, "bad_request", str(exc))
    try:
        tier_per_minute = ratelimit.tier_rate(key.tier, current_app.config)
        if limit is not policies.UNSET:  # checked before anything is changed
            policies.clean_owner_rate_limit(limit, tier_per_minute, key.tier)
        changed = policies.set_policies(
            db.session,
            key,
            ip_allowlist=body.ip_allowlist if "ip_allowlist" in given else policies.UNSET,
            meta=body.meta if "meta" in given else policies.UNSET,
            actor=_owner(record),
            actor_ip=client_ip(),
        )
        if limit is not policies.UNSET:
            changed |= policies.set_owner_rate_limit(
                db.session,
                key,
                limit,
                tier_per_minute=tier_per_minute,
                actor=_owner(record),
                actor_ip=client_ip(),
            )
    except lifecycle.KeyRequestError as exc:
        db.session.rollback()
        return api_error(400, "bad_request", str(exc))
    return jsonify({**key_json(key), "changed": changed})
