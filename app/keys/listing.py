"""The owner's key list: search by name, note or key ID, and filters by status, scope
and last use, as Stripe's and GitHub's key pages offer. The filters are SQL conditions,
so the one pager (app/pager.py) counts and pages the filtered list."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, cast, or_, select
from sqlalchemy.orm import Session

from app.keys import lifecycle
from app.models import ApiKey

MAX_QUERY = 100

STATUSES: dict[str, str] = {
    "live": "Live (active or expiring)",
    "active": "Active",
    "expiring": "Expiring",
    "expired": "Expired",
    "revoked": "Revoked",
}

USED: dict[str, str] = {
    "24h": "Used in the last 24 hours",
    "7d": "Used in the last 7 days",
    "30d": "Used in the last 30 days",
    "stale": "Not used for 30 days",
    "never": "Never used",
}
_WINDOWS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}


class FilterError(ValueError):
    """A filter value the form never offers (a typed or stale URL)."""


@dataclass(frozen=True, slots=True)
class KeyFilter:
    text: str = ""
    status: str = ""
    scope: str = ""
    used: str = ""

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> KeyFilter:
        """From the query string; `show=live` is the older link for status=live."""
        text = " ".join(str(args.get("q", "")).split())
        status = str(args.get("status", "") or ("live" if args.get("show") == "live" else ""))
        used = str(args.get("used", ""))
        if len(text) > MAX_QUERY:
            raise FilterError(f"Search for at most {MAX_QUERY} characters.")
        if status and status not in STATUSES:
            raise FilterError(f"status must be one of {', '.join(STATUSES)}.")
        if used and used not in USED:
            raise FilterError(f"used must be one of {', '.join(USED)}.")
        return cls(text=text, status=status, scope=str(args.get("scope", "")).strip(), used=used)

    @property
    def active(self) -> bool:
        return bool(self.text or self.status or self.scope or self.used)

    def args(self) -> dict[str, str]:
        """The query-string arguments that repeat this filter (for the pager's links)."""
        pairs = {"q": self.text, "status": self.status, "scope": self.scope, "used": self.used}
        return {k: v for k, v in pairs.items() if v}

    def conditions(
        self, session: Session, owner_id: int, max_expiring_days: int, now: datetime
    ) -> list[Any]:
        """WHERE conditions on ApiKey for this filter (the owner's own condition aside)."""
        where: list[Any] = []
        if self.text:
            key_id = ApiKey.prefix + "." + ApiKey.public_id
            where.append(
                or_(
                    ApiKey.name.icontains(self.text, autoescape=True),
                    ApiKey.note.icontains(self.text, autoescape=True),
                    key_id.icontains(self.text, autoescape=True),
                )
            )
        if self.status:
            where.append(self._status(session, owner_id, max_expiring_days, now))
        if self.scope:
            # The JSON list as text holds each scope as a quoted string, on SQLite and
            # PostgreSQL alike; scopes cannot hold a quote.
            where.append(
                cast(ApiKey.scopes, String).contains(json.dumps(self.scope), autoescape=True)
            )
        if self.used == "never":
            where.append(ApiKey.last_used_at.is_(None))
        elif self.used == "stale":
            where.append(
                or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < now - timedelta(days=30))
            )
        elif self.used:
            where.append(ApiKey.last_used_at >= now - _WINDOWS[self.used])
        return where

    def _status(self, session: Session, owner_id: int, max_days: int, now: datetime) -> Any:
        if self.status == "live":
            return lifecycle.is_live(now)
        if self.status == "revoked":
            return ApiKey.revoked_at.is_not(None)
        if self.status == "expired":
            return ApiKey.revoked_at.is_(None) & (ApiKey.expires_at <= now)
        # Active or expiring: the warning window is a share of each key's lifetime
        # (lifecycle.is_expiring), so the live keys are sorted here, by that one rule.
        live = session.scalars(
            select(ApiKey).where(ApiKey.user_id == owner_id, lifecycle.is_live(now))
        ).all()
        want = self.status == "expiring"
        ids = [k.id for k in live if lifecycle.is_expiring(k, now, max_days) == want]
        return ApiKey.id.in_(ids)


def scopes_in_use(session: Session, owner_id: int) -> list[str]:
    """Every scope the owner's keys hold, for the scope filter's choices."""
    return scopes_of(session.scalars(select(ApiKey.scopes).where(ApiKey.user_id == owner_id)))


def scopes_of(scope_lists: Iterable[list[str] | None]) -> list[str]:
    """The scopes these keys hold, sorted once each: scopes_in_use() when the keys at
    hand are already all the owner's (an unfiltered list on one page)."""
    return sorted({s for scopes in scope_lists for s in (scopes or [])})
