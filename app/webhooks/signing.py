"""Standard Webhooks signatures (https://www.standardwebhooks.com/, "Symmetric").

The endpoint's secret is HMAC-SHA256(pepper, label || salt): only the salt is
stored, so a copy of the database cannot sign a delivery, and the owner is shown the
secret once, as `whsec_` + base64, the form the specification's libraries take.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

_LABEL = b"keyledger webhook signing secret\x00"


def derive_secret(pepper: bytes, salt: bytes) -> bytes:
    return hmac.digest(pepper, _LABEL + salt, hashlib.sha256)


def secret_text(secret: bytes) -> str:
    return "whsec_" + base64.b64encode(secret).decode()


def signature(secret: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: `v1,` + base64(HMAC-SHA256 over id.timestamp.body)."""
    signed = msg_id.encode() + b"." + str(timestamp).encode() + b"." + body
    return "v1," + base64.b64encode(hmac.digest(secret, signed, hashlib.sha256)).decode()


def headers(secret: bytes, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, msg_id, timestamp, body),
    }
