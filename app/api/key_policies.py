"""PATCH /keys/{key_id}/policies: the owner sets a key's IP allowlist and metadata."""

from __future__ import annotations

from flask import jsonify
from flask.typing import ResponseReturnValue
from flask.wrappers import Response

from app.api import bp
from app.api.routes import _json_body, _own_key, _owner, api_error, key_json, key_required
from app.extensions import db
from app.keys import lifecycle, policies
from app.keys.cache import KeyRecord
from app.web import client_ip

POLICY_FIELDS = frozenset({"ip_allowlist", "meta"})


@bp.route("/keys/<key_id>/policies", methods=["PATCH"])
@key_required("keys:write")
def set_key_policies(record: KeyRecord, key_id: str) -> ResponseReturnValue:
    """Fields given replace the key's (null clears one), fields left out stay; a bad
    one is a 400 and changes nothing. The per-key rate limit is an admin's, not here."""
    body = _json_body(POLICY_FIELDS, {"rate_limit": " (a key's own rate limit is set by an admin)"})
    if isinstance(body, Response):
        return body
    key = _own_key(record, key_id)
    if isinstance(key, Response):
        return key
    try:
        changed = policies.set_policies(
            db.session,
            key,
            ip_allowlist=body.get("ip_allowlist", policies.UNSET),
            meta=body.get("meta", policies.UNSET),
            actor=_owner(record),
            actor_ip=client_ip(),
        )
    except lifecycle.KeyRequestError as exc:
        db.session.rollback()
        return api_error(400, "bad_request", str(exc))
    return jsonify({**key_json(key), "changed": changed})
