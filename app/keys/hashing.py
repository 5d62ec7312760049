"""Secret hashing. HMAC-SHA256 under a server-side pepper, not a slow hash.

A 192-bit random secret cannot be brute-forced, so a slow KDF adds nothing but
latency: argon2 would cap a core at a few validations a second (docs/performance.md,
"Secret hashing: HMAC, not argon2"). The pepper
lives outside the database, so a stolen database alone verifies nothing.
"""

from __future__ import annotations

import hmac

# Compared against when the key id is unknown, so both failures cost the same.
DUMMY_HASH = bytes(32)


def hash_secret(pepper: str | bytes, secret: str) -> bytes:
    key = pepper.encode() if isinstance(pepper, str) else pepper
    # hmac.digest: OpenSSL's one-shot HMAC, several times cheaper than hmac.new().digest()
    return hmac.digest(key, secret.encode("ascii"), "sha256")


def secret_matches(pepper: str | bytes, secret: str, stored: bytes) -> bool:
    return hmac.compare_digest(hash_secret(pepper, secret), stored)
