from flask import jsonify, request
from flask.typing import ResponseReturnValue

from app.api import bp
from app.extensions import db
from app.keys import lifecycle
from app.web import client_ip, key_policy

MAX_BODY = 16 * 1024


def _error(status: int, error: str, **extra: object) -> ResponseReturnValue:
    return jsonify({"valid": False, "error": error, **extra}), status


@bp.route("/keys/validate", methods=["POST"])
def validate() -> ResponseReturnValue:
    if request.content_length is not None and request.content_length > MAX_BODY:
        return _error(413, "payload_too_large")
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or "key" not in body:
        return _error(400, "bad_request", message='send JSON {"key": "..."}')
    result = lifecycle.validate(db.session, key_policy(), body["key"], client_ip=client_ip())
    if not result.valid or result.key is None:
        return _error(401, result.error or "invalid_key")
    key = result.key
    return jsonify(
        {
            "valid": True,
            "key_id": key.public_id,
            "tier": key.tier,
            "scopes": list(key.scopes),
            "expires_at": key.expires_at.isoformat().replace("+00:00", "Z"),
        }
    )
