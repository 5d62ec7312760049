"""Public, login-free transparency endpoints: what a witness or monitor follows.

Only hashes and sizes leave through here (signed checkpoints, consistency proofs,
inclusion proofs by leaf hash); event contents stay behind the admin pages. Answers
are text, cacheable for a few seconds, with an ETag.
"""

from __future__ import annotations

import hashlib
import re

from flask import Blueprint, Response, request
from flask.typing import ResponseReturnValue

from app.audit import core
from app.audit import log as auditlog
from app.extensions import db

bp = Blueprint("transparency", __name__)
MAX_AGE = 5
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_SIZE = re.compile(r"0|[1-9][0-9]{0,18}")
MAX_SIZE = (1 << 63) - 1  # the database stores sizes as signed 64-bit integers


def _text(body: str, status: int = 200, cache: bool = True) -> Response:
    response = Response(body, status=status, mimetype="text/plain")
    if cache:
        response.headers["Cache-Control"] = f"public, max-age={MAX_AGE}"
        response.set_etag(hashlib.sha256(body.encode()).hexdigest()[:32])
        response.make_conditional(request)
    else:
        response.headers["Cache-Control"] = "no-store"
    return response


def _size(name: str, required: bool) -> int | Response | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return _text(f"{name} is required\n", 400, cache=False) if required else None
    if not _SIZE.fullmatch(raw) or int(raw) > MAX_SIZE:
        return _text(
            f"{name} must be a tree size in plain decimal, at most {MAX_SIZE}\n", 400, cache=False
        )
    return int(raw)


@bp.route("/checkpoint")
def checkpoint() -> ResponseReturnValue:
    """The latest checkpoint as a C2SP signed note (with any witness cosignatures)."""
    with db.engine.connect() as conn:
        cp = auditlog.latest_checkpoint(conn)
    if cp is None or cp.legacy:
        return _text("no signed checkpoint yet\n", 404, cache=False)
    return _text(cp.signed_note())


@bp.route("/consistency")
def consistency() -> ResponseReturnValue:
    """`old N`, the RFC 9162 proof lines (base64), a blank line and the checkpoint."""
    old = _size("old", True)
    if isinstance(old, Response):
        return old
    new = _size("new", False)
    if isinstance(new, Response):
        return new
    if new is not None and old > new:  # type: ignore[operator]
        return _text("old must not be larger than new\n", 400, cache=False)
    with db.engine.connect() as conn:
        try:
            body = auditlog.consistency_proof(conn, old, new)  # type: ignore[arg-type]
        except auditlog.LogError as exc:
            return _text(f"{exc}\n", 404, cache=False)
    return _text(body)


@bp.route("/inclusion")
def inclusion() -> ResponseReturnValue:
    """A C2SP tlog-proof for the leaf with this hash against the latest checkpoint,
    without the event bytes."""
    leaf = request.args.get("leaf", "")
    if not _HEX64.fullmatch(leaf):  # match() with `$` took a trailing newline
        return _text("leaf must be a leaf hash in 64 hex digits\n", 400, cache=False)
    with db.engine.connect() as conn:
        seq = auditlog.seq_of_leaf(conn, bytes.fromhex(leaf))
        if seq is None:
            return _text("no sealed event has this leaf hash\n", 404, cache=False)
        try:
            proof = auditlog.inclusion_proof(conn, seq)
        except auditlog.LogError as exc:
            return _text(f"{exc}\n", 404, cache=False)
    cp = proof["checkpoint"]
    path = [bytes.fromhex(h) for h in proof["path"]]
    return _text(core.format_inclusion_proof(seq, path, cp, None))
