"""Per-key policies checked at validation: an IP allowlist, the owner's metadata and an
admin's own rate limit. Checked and normalised here once, when they are set; the hot
path reads them parsed from the cached key record (app/keys/cache.py)."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from sqlalchemy.orm import Session

from app.audit import trail
from app.keys.cache import Network
from app.keys.lifecycle import KeyRequestError
from app.models import ApiKey, User

MAX_RANGES = 100
MAX_RANGE_LEN = 49  # the longest IPv6 CIDR text: 39 + "/128", with room for a scope
MAX_META_BYTES = 1024
MAX_RATE_LIMIT = 1_000_000  # per minute
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class _Unset:
    """No change requested (distinct from None, which clears a policy)."""


UNSET: Any = _Unset()


def clean_allowlist(ranges: object) -> list[str] | None:
    """CIDR ranges (IPv4 and IPv6; a bare address is one host) in their normal form,
    deduplicated; None or an empty list means "from anywhere". Raises KeyRequestError."""
    if ranges is None:
        return None
    if not isinstance(ranges, list) or not all(isinstance(r, str) for r in ranges):
        raise KeyRequestError('"ip_allowlist" must be a list of CIDR ranges (strings)')
    if len(ranges) > MAX_RANGES:
        raise KeyRequestError(f"at most {MAX_RANGES} ranges in an IP allowlist")
    result: list[str] = []
    for text in ranges:
        text = text.strip()
        try:
            if not text or len(text) > MAX_RANGE_LEN or not text.isascii():
                raise ValueError
            network = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise KeyRequestError(
                f"“{text[:60]}” is not an IP range: use CIDR such as 203.0.113.0/24 or "
                "2001:db8::/32 (a bare address is one host)"
            ) from None
        if str(network) not in result:
            result.append(str(network))
    return result or None


def client_address(text: object) -> Address | None:
    """An address as a service reports it or a peer has it; None when it is not one.
    An IPv4-mapped IPv6 address counts as its IPv4 address."""
    if not isinstance(text, str) or len(text) > 45:
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def ip_allowed(networks: tuple[Network, ...], address: Address | None) -> bool:
    """No allowlist: any address. Else the address must be in one of the ranges (an
    unknown address is not)."""
    if not networks:
        return True
    if address is None:
        return False
    return any(address in network for network in networks)


def clean_meta(meta: object) -> dict[str, Any] | None:
    """A JSON object of at most 1 KiB (compact UTF-8), or None to clear."""
    if meta is None:
        return None
    if not isinstance(meta, dict):
        raise KeyRequestError('"meta" must be a JSON object (or null)')
    try:
        encoded = json.dumps(meta, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        raise KeyRequestError('"meta" must be plain JSON') from None
    if len(encoded.encode("utf-8", "surrogatepass")) > MAX_META_BYTES:
        raise KeyRequestError(f'"meta" is limited to {MAX_META_BYTES} bytes of JSON')
    if "\x00" in encoded or "\\u0000" in encoded:
        raise KeyRequestError('"meta" must not contain NUL characters')
    try:
        encoded.encode("utf-8")
    except UnicodeEncodeError:
        raise KeyRequestError('"meta" must be valid Unicode text') from None
    return json.loads(encoded)


def clean_rate_limit(limit: object) -> int | None:
    """A per-minute limit for one key (an admin's or its owner's), or None."""
    if limit is None or limit == "":
        return None
    if isinstance(limit, str) and limit.strip().isdigit():
        limit = int(limit.strip())
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_RATE_LIMIT:
        raise KeyRequestError(f"the rate limit must be a whole number from 1 to {MAX_RATE_LIMIT}")
    return limit


def clean_owner_rate_limit(limit: object, tier_per_minute: int, tier: str) -> int | None:
    """An owner's own per-minute limit: a whole number at or below the tier's, or None."""
    cleaned = clean_rate_limit(limit)
    if cleaned is not None and cleaned > tier_per_minute:
        raise KeyRequestError(
            f"the rate limit can be at most {tier_per_minute:,} a minute, the {tier} "
            "tier's: a key's own limit can only lower it (a higher plan raises it)"
        )
    return cleaned


def set_owner_rate_limit(
    session: Session,
    key: ApiKey,
    limit: object,
    *,
    tier_per_minute: int,
    actor: User,
    actor_ip: str | None,
) -> bool:
    """The owner's own per-minute limit for the key, at or below its tier's
    (`tier_per_minute`; None or "": the tier's again); audited as `key.limit_changed`,
    committed. False when nothing changed; above the tier's it is refused."""
    cleaned = clean_owner_rate_limit(limit, tier_per_minute, key.tier)
    if cleaned == key.owner_rate_limit:
        return False
    old, key.owner_rate_limit = key.owner_rate_limit, cleaned
    trail.record(
        session,
        "key.limit_changed",
        actor=f"user:{actor.id}",
        actor_ip=actor_ip,
        target=f"key:{key.public_id}",
        details={
            "owner": f"user:{key.user_id}",
            "owner_rate_limit": cleaned,
            "previous": old,
        },
    )
    session.commit()
    return True


def set_policies(
    session: Session,
    key: ApiKey,
    *,
    ip_allowlist: object = UNSET,
    meta: object = UNSET,
    actor: User,
    actor_ip: str | None,
) -> bool:
    """Set the owner's policies (each checked first: a bad one changes nothing), audit
    `key.policy_changed` and commit. False when nothing changed."""
    changes: dict[str, Any] = {}
    if ip_allowlist is not UNSET:
        cleaned = clean_allowlist(ip_allowlist)
        if cleaned != key.ip_allowlist:
            changes["ip_allowlist"] = cleaned
    if meta is not UNSET:
        cleaned_meta = clean_meta(meta)
        if cleaned_meta != key.meta:
            changes["meta"] = cleaned_meta
    if not changes:
        return False
    for name, value in changes.items():
        setattr(key, name, value)
    details: dict[str, Any] = {"owner": f"user:{key.user_id}"}
    if "ip_allowlist" in changes:
        details["ip_allowlist"] = changes["ip_allowlist"]
    if "meta" in changes:  # the owner's data stays out of the trail; its size does not
        details["meta_bytes"] = len(json.dumps(changes["meta"])) if changes["meta"] else 0
    trail.record(
        session,
        "key.policy_changed",
        sensitivity="high",
        actor=f"user:{actor.id}",
        actor_ip=actor_ip,
        target=f"key:{key.public_id}",
        details=details,
    )
    session.commit()
    return True


def set_rate_limit(
    session: Session, key: ApiKey, limit: object, *, actor: User, actor_ip: str | None
) -> bool:
    """An admin gives the key its own per-minute limit (None: the tier's again); audited
    as `key.limit_changed`, committed. False when nothing changed."""
    cleaned = clean_rate_limit(limit)
    if cleaned == key.rate_limit:
        return False
    old, key.rate_limit = key.rate_limit, cleaned
    trail.record(
        session,
        "key.limit_changed",
        sensitivity="high",
        actor=f"user:{actor.id}",
        actor_ip=actor_ip,
        target=f"key:{key.public_id}",
        details={"owner": f"user:{key.user_id}", "rate_limit": cleaned, "previous": old},
    )
    session.commit()
    return True


def describe(key: ApiKey) -> dict[str, Any]:
    """The policies of a key as the API and the portal show them."""
    return {
        "ip_allowlist": list(key.ip_allowlist or []),
        "meta": key.meta,
        "rate_limit": key.rate_limit,
        "owner_rate_limit": key.owner_rate_limit,
    }
