"""Leaked keys revoke themselves: reports from GitHub secret scanning (signed) and from
anyone (POST /api/v1/keys/report-leak), the owner's notice, and GitHub's signing keys.

Every string is checked for shape and checksum first (app/keys/format.py), so noise
costs no query; the candidates are looked up in one query and their secrets compared
in constant time. A key found is marked leaked and revoked in one conditional UPDATE,
so a repeated or concurrent report of the same key changes nothing more and is audited
once (`key.leaked`, critical, with where it was found).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import threading
import time
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.audit import trail
from app.keys import format as keyformat
from app.keys.cache import note_changed
from app.keys.hashing import hash_secret
from app.keys.lifecycle import KeyPolicy
from app.models import ApiKey, User
from app.models._types import utcnow

log = logging.getLogger(__name__)

MAX_REPORTED = 1000  # strings per report, either endpoint
MAX_LOCATION = 500


@dataclass(frozen=True, slots=True)
class Report:
    """One reported string and where it was found (a URL, or how it was reported)."""

    token: str
    location: str


def _candidates(
    reports: Iterable[Report], prefix: str, test_prefix: str = ""
) -> dict[str, list[tuple[int, str]]]:
    """public_id -> [(index, secret)] for the strings that are well-formed keys of ours
    (test keys included: a leaked secret is leaked whatever its prefix)."""
    found: dict[str, list[tuple[int, str]]] = {}
    for i, report in enumerate(reports):
        try:
            parsed = keyformat.parse(report.token, prefix, test_prefix)
        except keyformat.MalformedKey:
            continue
        found.setdefault(parsed.public_id, []).append((i, parsed.secret))
    return found


@dataclass(frozen=True)
class Leaked:
    """A key just marked leaked, with what its owner's mail needs."""

    email: str
    notices_off: str
    name: str
    location: str


def revoke_leaked(
    session: Session,
    policy: KeyPolicy,
    reports: Sequence[Report],
    *,
    reporter: str,
    actor_ip: str | None,
    found: list[Leaked] | None = None,
) -> list[bool]:
    """Mark every reported live key leaked and revoke it, audited; commit.

    Returns, per report, whether the string is one of our keys (its secret matches,
    whatever the key's state): GitHub's true_positive. The public endpoint does not
    show it to the reporter. `found` collects each key newly marked, for the owner's
    mail (read in the same query: the report costs no more queries when it hits).
    """
    hits = [False] * len(reports)
    candidates = _candidates(reports, policy.prefix, policy.test_prefix)
    if not candidates:
        return hits  # no query for noise
    rows = session.execute(
        select(
            ApiKey.id,
            ApiKey.public_id,
            ApiKey.secret_hash,
            ApiKey.user_id,
            ApiKey.name,
            User.email,
            User.notices_off,
        )
        .join(User, User.id == ApiKey.user_id)
        .where(ApiKey.public_id.in_(list(candidates)))
    ).all()
    now = utcnow()
    changed = False
    for row in rows:
        stored = bytes(row.secret_hash)
        first: int | None = None
        for index, secret in candidates[row.public_id]:
            if hmac.compare_digest(hash_secret(policy.pepper, secret), stored):
                hits[index] = True
                first = index if first is None else first
        if first is None:
            continue
        location = _clean_location(reports[first].location)
        # One conditional UPDATE: whoever marks it first audits it; a repeat finds it marked.
        marked = session.execute(
            update(ApiKey)
            .where(ApiKey.id == row.id, ApiKey.leaked_at.is_(None))
            .values(leaked_at=now, leak_location=location)
        ).rowcount
        if not marked:
            continue
        revoked = session.execute(
            update(ApiKey)
            .where(ApiKey.id == row.id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=now)
        ).rowcount
        note_changed(session, row.public_id)
        trail.record(
            session,
            "key.leaked",
            sensitivity="critical",
            actor=reporter,
            actor_ip=actor_ip,
            target=f"key:{row.public_id}",
            details={
                "found_at": location,
                "revoked": bool(revoked),  # false: it was revoked before the report
                "name": row.name,
                "owner": f"user:{row.user_id}",
            },
        )
        changed = True
        if found is not None:
            found.append(Leaked(row.email, row.notices_off or "", row.name, location))
    if changed:
        session.commit()
    else:
        session.rollback()
    return hits


def _clean_location(text: str) -> str:
    """Where a key was found, as the owner and the trail see it: printable, bounded."""
    cleaned = "".join(ch for ch in text if ch.isprintable())
    return cleaned[:MAX_LOCATION] or "unknown"


def pending_notices(session: Session, user_id: int) -> list[ApiKey]:
    """The owner's leaked keys they were not yet told of at a login."""
    return list(
        session.scalars(
            select(ApiKey)
            .where(
                ApiKey.user_id == user_id,
                ApiKey.leaked_at.is_not(None),
                ApiKey.leak_notified_at.is_(None),
            )
            .order_by(ApiKey.leaked_at)
        )
    )


def mark_notified(session: Session, keys: Iterable[ApiKey]) -> None:
    """The owner was told (at login); the key page keeps its banner. Commits."""
    now = utcnow()
    for key in keys:
        key.leak_notified_at = now
    session.commit()


# --- GitHub's signing keys --------------------------------------------------------------


class GitHubKeys:
    """GitHub secret scanning's public keys (its meta/public_keys/secret_scanning document),
    read from a URL or a file, kept per app (app.extensions).

    Refreshed when none are held, when an alert names a key identifier not held (GitHub
    rotates its keys) or when the copy is older than `max_age`; never more than once
    per `min_interval`. A failed refresh keeps the stale copy. A fetch is bounded by
    `timeout`, so an alert is answered within a second.
    """

    def __init__(
        self,
        source: str,
        *,
        min_interval: float = 60.0,
        max_age: float = 3600.0,
        timeout: float = 0.5,
    ) -> None:
        self.source = source
        self.min_interval = min_interval
        self.max_age = max_age
        self.timeout = timeout
        self._keys: dict[str, ec.EllipticCurvePublicKey] | None = None
        self._fetched = 0.0  # monotonic time of the last successful fetch
        self._tried = float("-inf")  # ... and of the last attempt
        self._lock = threading.Lock()

    def verify(self, body: bytes, key_identifier: str | None, signature: str | None) -> bool:
        """Does `signature` (base64 DER ECDSA P-256 / SHA-256 over the raw body) verify
        under GitHub's key named `key_identifier`? False for anything missing or wrong."""
        if not key_identifier or not signature or len(signature) > 512:
            return False
        try:
            raw_signature = base64.b64decode(signature, validate=True)
        except (binascii.Error, ValueError):
            return False
        public_key = self._key(key_identifier.strip())
        if public_key is None:
            return False
        try:
            public_key.verify(raw_signature, body, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            return False
        return True

    def _key(self, identifier: str) -> ec.EllipticCurvePublicKey | None:
        with self._lock:
            keys = self._keys
            now = time.monotonic()
            stale = keys is None or identifier not in keys or now - self._fetched > self.max_age
            if stale and now - self._tried >= self.min_interval:
                self._tried = now
                try:
                    keys = self._keys = self._fetch()
                    self._fetched = now
                except (OSError, ValueError, TypeError, KeyError) as exc:
                    log.warning(
                        "GitHub secret scanning keys: fetch from %s failed (%s); %s",
                        self.source,
                        exc,
                        "using the copy held" if keys else "none held",
                    )
        return (keys or {}).get(identifier)

    def _fetch(self) -> dict[str, ec.EllipticCurvePublicKey]:
        if self.source.startswith(("https://", "http://")):
            # The scheme is checked on the line above: http(s) only.
            request = urllib.request.Request(  # noqa: S310
                self.source, headers={"Accept": "application/json", "User-Agent": "keyledger"}
            )
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                raw = response.read(1024 * 1024)
        else:
            raw = Path(self.source).read_bytes()
        return parse_public_keys(json.loads(raw))


def parse_public_keys(document: Any) -> dict[str, ec.EllipticCurvePublicKey]:
    """key_identifier -> P-256 public key, from GitHub's document
    {"public_keys": [{"key_identifier", "key" (PEM), "is_current"}]}; others skipped."""
    keys: dict[str, ec.EllipticCurvePublicKey] = {}
    for entry in document["public_keys"]:
        try:
            loaded = serialization.load_pem_public_key(str(entry["key"]).encode())
        except (ValueError, TypeError, KeyError):
            continue
        if isinstance(loaded, ec.EllipticCurvePublicKey) and isinstance(loaded.curve, ec.SECP256R1):
            keys[str(entry["key_identifier"])] = loaded
    if not keys:
        raise ValueError("the document holds no P-256 public key")
    return keys
