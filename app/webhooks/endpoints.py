"""Register, list and remove an owner's webhook endpoints (audited)."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.audit import trail
from app.models import User, WebhookDelivery, WebhookEndpoint
from app.models._types import utcnow
from app.webhooks import EVENT_TYPES, TEST_EVENT, signing, targets
from app.webhooks.events import enqueue_one, message, start_audit_cursor
from app.webhooks.settings import WebhookSettings


class WebhookRequestError(ValueError):
    """An endpoint request that cannot be honoured; the message is safe to show."""


@dataclass(frozen=True)
class NewEndpoint:
    """A freshly registered endpoint and its signing secret: show it once."""

    endpoint: WebhookEndpoint
    secret: str


def secret_of(settings: WebhookSettings, endpoint: WebhookEndpoint) -> bytes:
    return signing.derive_secret(settings.pepper, endpoint.salt)


def owned(session: Session, owner: User, public_id: str) -> WebhookEndpoint | None:
    """The owner's live endpoint, or None (a foreign or unknown id looks the same)."""
    if not (0 < len(public_id) <= 32 and public_id.isalnum()):
        return None
    return session.scalar(
        select(WebhookEndpoint).where(
            WebhookEndpoint.public_id == public_id,
            WebhookEndpoint.user_id == owner.id,
            WebhookEndpoint.disabled_at.is_(None),
        )
    )


def live(session: Session, owner: User) -> list[WebhookEndpoint]:
    return list(
        session.scalars(
            select(WebhookEndpoint)
            .where(WebhookEndpoint.user_id == owner.id, WebhookEndpoint.disabled_at.is_(None))
            .order_by(WebhookEndpoint.created_at)
        )
    )


def create(
    session: Session,
    settings: WebhookSettings,
    owner: User,
    *,
    url: str,
    events: Iterable[str],
    actor_ip: str | None,
) -> NewEndpoint:
    """Register `url` for `events` (commits). The secret is derived, never stored."""
    url = url.strip()
    chosen = [e for e in EVENT_TYPES if e in set(events)]
    if not chosen:
        raise WebhookRequestError("choose at least one event")
    try:
        targets.check(url, allow_private=settings.allow_private)
    except targets.TargetRefused as exc:
        raise WebhookRequestError(str(exc)) from exc
    if len(live(session, owner)) >= settings.max_endpoints:
        raise WebhookRequestError(f"at most {settings.max_endpoints} endpoints per account")
    endpoint = WebhookEndpoint(
        public_id=secrets.token_hex(8),
        user_id=owner.id,
        url=url,
        events=chosen,
        salt=secrets.token_bytes(32),
        created_at=utcnow(),
    )
    session.add(endpoint)
    session.flush()
    start_audit_cursor(session)
    trail.record(
        session,
        "webhook.created",
        actor=f"user:{owner.id}",
        actor_ip=actor_ip,
        target=f"webhook:{endpoint.public_id}",
        sensitivity="high",
        details={"url": url, "events": chosen},
    )
    session.commit()
    return NewEndpoint(endpoint, signing.secret_text(secret_of(settings, endpoint)))


def remove(
    session: Session, owner: User, endpoint: WebhookEndpoint, *, actor_ip: str | None
) -> None:
    """Stop sending to the endpoint; its delivery log stays for the record (commits)."""
    endpoint.disabled_at = utcnow()
    trail.record(
        session,
        "webhook.deleted",
        actor=f"user:{owner.id}",
        actor_ip=actor_ip,
        target=f"webhook:{endpoint.public_id}",
        sensitivity="high",
        details={"url": endpoint.url},
    )
    session.commit()


def send_test(session: Session, endpoint: WebhookEndpoint) -> None:
    """Queue a `webhook.test` message; the dispatcher sends it within its interval."""
    now = utcnow()
    enqueue_one(
        session,
        endpoint,
        message(TEST_EVENT, now, {"endpoint": endpoint.public_id, "message": "It works."}),
        f"test:{secrets.token_hex(8)}",
    )
    session.commit()


def deliveries(session: Session, endpoint: WebhookEndpoint, limit: int = 50) -> list:
    return list(
        session.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.endpoint_id == endpoint.id)
            .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc())
            .limit(limit)
        )
    )


def delivery_counts(session: Session, owner: User) -> dict[int, dict[str, int]]:
    """Per endpoint id: how many deliveries are pending, delivered and failed."""
    rows = session.execute(
        select(WebhookDelivery.endpoint_id, WebhookDelivery.state, func.count())
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .where(WebhookEndpoint.user_id == owner.id)
        .group_by(WebhookDelivery.endpoint_id, WebhookDelivery.state)
    ).all()
    counts: dict[int, dict[str, int]] = {}
    for endpoint_id, state, n in rows:
        counts.setdefault(endpoint_id, {})[state] = n
    return counts
