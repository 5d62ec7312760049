"""The checkpoint signing key and the public keys trusted to have signed old checkpoints.

The private key lives outside the database (AUDIT_SIGNING_KEY: PEM text from the
environment, or instance/audit_signing_key.pem in development). Checkpoints are C2SP
signed notes under the key name = the log's origin, so the signed-note key id
follows from (origin, key); old checkpoints stay verifiable as long as their public
key is listed in AUDIT_TRUSTED_KEYS.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from app.audit import core


class SigningKeyError(ValueError):
    """AUDIT_SIGNING_KEY or AUDIT_TRUSTED_KEYS cannot be used; start-up must say why."""


@dataclass(frozen=True)
class Signer:
    private: Ed25519PrivateKey
    public: Ed25519PublicKey
    name: str

    @property
    def key_id(self) -> str:
        """The signed-note key id (8 hex digits) under the log's origin."""
        return core.note_key_id(self.name, self.public).hex()

    @property
    def vkey(self) -> str:
        return core.vkey(self.name, self.public)

    @property
    def public_pem(self) -> str:
        return core.public_key_pem(self.public)

    def sign(self, data: bytes) -> bytes:
        return self.private.sign(data)


def load_private_key(pem: str, what: str = "AUDIT_SIGNING_KEY") -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"{what} is not a PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{what} must be an Ed25519 private key")
    return key


def load_signer(pem: str, origin: str = "keyledger/audit") -> Signer:
    key = load_private_key(pem)
    return Signer(key, key.public_key(), origin)


def trusted_keys(signer: Signer, extra: str | None) -> core.KeyRing:
    """The current public key plus the old ones from AUDIT_TRUSTED_KEYS, which is PEM
    text or the path of a file holding PEM public keys and/or vkeys."""
    keys = core.KeyRing(signer.name)
    keys.add_public_key(signer.public)
    if not extra:
        return keys
    text = extra
    if "-----BEGIN" not in extra and "+" not in extra:
        path = Path(extra)
        if not path.exists():
            return keys
        text = path.read_text()
    try:
        pems, vkeys = core.load_key_text(text)
    except ValueError as exc:
        raise SigningKeyError(f"AUDIT_TRUSTED_KEYS: {exc}") from None
    for key in pems:
        keys.add_public_key(key)
    for v in vkeys:
        keys.add_verifier(v)
    return keys


def witness_keys(keys: core.KeyRing, entries: str | None) -> list[tuple[str, core.Verifier]]:
    """AUDIT_WITNESSES: one `URL VKEY` per line (or `;`-separated); the URL is the
    witness's submission prefix, or `-` for a witness that is not called."""
    out: list[tuple[str, core.Verifier]] = []
    for entry in (entries or "").replace(";", "\n").splitlines():
        if not entry.strip() or entry.lstrip().startswith("#"):
            continue
        parts = entry.split()
        if len(parts) != 2:
            raise SigningKeyError(f"AUDIT_WITNESSES: {entry!r} is not `URL VKEY`")
        try:
            witness = core.parse_vkey(parts[1])
        except ValueError as exc:
            raise SigningKeyError(f"AUDIT_WITNESSES: {exc}") from None
        if witness.sig_type != core.SIG_COSIGNATURE:
            raise SigningKeyError("AUDIT_WITNESSES: a witness vkey has signature type 0x04")
        keys.add_verifier(witness)
        out.append((parts[0], witness))
    return out
