"""Least privilege for keys that manage keys: a key can never produce, obtain or widen
a key beyond itself (issue 22, docs/security.md "Keys that manage keys").

Checked once here for the API's management views, which pass the calling key as plain
values (its scopes, expiry and parsed allowlist). A person in the portal is not a key
and keeps the owner's full rights, so the portal never calls these.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from app.keys.cache import Network
from app.keys.lifecycle import KeyRequestError


@dataclass(frozen=True)
class Caller:
    """The key that asks, as plain values: what it may hand on."""

    scopes: tuple[str, ...]
    expires_at: datetime
    networks: tuple[Network, ...] = ()  # its IP allowlist; empty: from anywhere


class BeyondCaller(KeyRequestError):
    """The request would give a key more than the caller has: a 403, not a 400."""


class MissingScopes(BeyondCaller):
    """The caller lacks scopes the key it acts on holds (or would hold)."""

    def __init__(self, message: str, missing: list[str]) -> None:
        super().__init__(message)
        self.missing = missing


class OutsideAllowlist(BeyondCaller):
    """The key would work from addresses the caller does not."""


def check_scopes(caller: Caller, scopes: Iterable[str], *, granting: bool) -> None:
    """Every scope of the key acted on (`granting`: of the key to be made) must be the
    caller's own, else MissingScopes naming those it lacks."""
    missing = [s for s in dict.fromkeys(scopes) if s not in caller.scopes]
    if not missing:
        return
    if granting:
        raise MissingScopes("a key can only grant scopes it holds itself", missing)
    raise MissingScopes(
        "a key can only rotate or change a key whose every scope it holds itself", missing
    )


def not_after(caller: Caller, now: datetime, lifetime_days: int, *, asked: bool) -> datetime:
    """When a key made now by the caller expires: `lifetime_days` from now, but never
    after the caller. A lifetime the request asked for that outlives the caller is
    refused (KeyRequestError, a 400); the default one is clamped."""
    wanted = now + timedelta(days=lifetime_days)
    if wanted <= caller.expires_at:
        return wanted
    if asked:
        raise KeyRequestError(
            f"lifetime_days {lifetime_days} outlives this key, which expires "
            f"{caller.expires_at.isoformat(timespec='seconds')}: a key cannot make a key "
            "that lives longer than itself (ask for fewer days)"
        )
    return caller.expires_at


def _networks(ranges: Iterable[str]) -> list[Network]:
    return [ipaddress.ip_network(r, strict=False) for r in ranges]


def _inside(network: Network, bounds: Iterable[Network]) -> bool:
    return any(
        network.version == bound.version and network.subnet_of(bound)  # type: ignore[arg-type]
        for bound in bounds
    )


def child_allowlist(caller: Caller, asked: list[str] | None) -> list[str] | None:
    """The allowlist of a key the caller makes (`asked`: cleaned ranges, None when not
    given): a bound caller's child inherits its allowlist when none is asked, and every
    range asked must lie inside the caller's, else OutsideAllowlist."""
    if not caller.networks:
        return asked
    if not asked:
        return [str(n) for n in caller.networks]
    outside = [str(n) for n in _networks(asked) if not _inside(n, caller.networks)]
    if outside:
        raise OutsideAllowlist(
            f"{', '.join(outside)} is outside this key's IP allowlist: a key bound to an "
            "allowlist can only make keys bound within it"
        )
    return asked


def check_allowlist_change(
    caller: Caller, current: list[str] | None, new: list[str] | None
) -> None:
    """A bound caller cannot remove another key's allowlist, nor widen it: every new
    range must lie inside the key's current allowlist (None: from anywhere, so any
    list narrows it). An unbound caller works from anywhere and may set any."""
    if not caller.networks or not current:
        return
    if not new:
        raise OutsideAllowlist(
            "a key bound to an IP allowlist cannot remove another key's allowlist"
        )
    outside = [str(n) for n in _networks(new) if not _inside(n, _networks(current))]
    if outside:
        raise OutsideAllowlist(
            f"{', '.join(outside)} would widen the key's IP allowlist: a key bound to an "
            "allowlist can only narrow another key's"
        )


def check_rotation(caller: Caller, scopes: Iterable[str], allowlist: list[str] | None) -> None:
    """Rotating hands the caller the successor's secret: it needs every scope the key
    holds, and a bound caller only rotates keys that work within its own allowlist."""
    check_scopes(caller, scopes, granting=False)
    if not caller.networks:
        return
    if not allowlist or not all(_inside(n, caller.networks) for n in _networks(allowlist)):
        raise OutsideAllowlist(
            "this key works from addresses outside this key's IP allowlist: a key bound to "
            "an allowlist can only rotate keys bound within it"
        )
