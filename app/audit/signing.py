"""The checkpoint signing key and the public keys trusted to have signed old checkpoints.

The private key lives outside the database (AUDIT_SIGNING_KEY: PEM text from the
environment, or instance/audit_signing_key.pem in development). Its key id is derived
from the public key, so rotating the key changes the id and old checkpoints stay
verifiable as long as their public key is listed in AUDIT_TRUSTED_KEYS.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from app.audit.offline import key_id, load_public_keys, public_key_pem


class SigningKeyError(ValueError):
    """AUDIT_SIGNING_KEY or AUDIT_TRUSTED_KEYS cannot be used; start-up must say why."""


@dataclass(frozen=True)
class Signer:
    private: Ed25519PrivateKey
    public: Ed25519PublicKey
    key_id: str

    @property
    def public_pem(self) -> str:
        return public_key_pem(self.public)

    def sign(self, data: bytes) -> bytes:
        return self.private.sign(data)


def load_signer(pem: str) -> Signer:
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"AUDIT_SIGNING_KEY is not a PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError("AUDIT_SIGNING_KEY must be an Ed25519 private key")
    public = key.public_key()
    return Signer(key, public, key_id(public))


def trusted_keys(signer: Signer, extra: str | None) -> dict[str, Ed25519PublicKey]:
    """The current public key plus the old ones from AUDIT_TRUSTED_KEYS, which is PEM
    text or the path of a file holding one or more PEM public keys."""
    keys = {signer.key_id: signer.public}
    if not extra:
        return keys
    text = extra
    if "-----BEGIN" not in extra:
        path = Path(extra)
        if not path.exists():
            return keys
        text = path.read_text()
    try:
        keys.update(load_public_keys(text))
    except ValueError as exc:
        raise SigningKeyError(f"AUDIT_TRUSTED_KEYS: {exc}") from None
    return keys
