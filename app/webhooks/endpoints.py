"""Register, list and remove an owner's webhook endpoints (audited)."""

from __future__ import annotations

import json
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


MAX_DESCRIPTION = 200


def _checked(
    settings: WebhookSettings, url: str, events: Iterable[str], description: str
) -> tuple[str, list[str], str]:
    """(url, events in EVENT_TYPES order, description) once each passes, the one check
    creation and editing share (the address filter included)."""
    url = url.strip()
    description = " ".join(description.split())
    chosen = [e for e in EVENT_TYPES if e in set(events)]
    if not chosen:
        raise WebhookRequestError("choose at least one event")
    if len(description) > MAX_DESCRIPTION:
        raise WebhookRequestError(f"use a description of at most {MAX_DESCRIPTION} characters")
    try:
        targets.check(url, allow_private=settings.allow_private)
    except targets.TargetRefused as exc:
        raise WebhookRequestError(str(exc)) from exc
    return url, chosen, description


def create(
    session: Session,
    settings: WebhookSettings,
    owner: User,
    *,
    url: str,
    events: Iterable[str],
    actor_ip: str | None,
    description: str = "",
) -> NewEndpoint:
    """Register `url` for `events` (commits). The secret is derived, never stored."""
    url, chosen, description = _checked(settings, url, events, description)
    if len(live(session, owner)) >= settings.max_endpoints:
        raise WebhookRequestError(f"at most {settings.max_endpoints} endpoints per account")
    endpoint = WebhookEndpoint(
        public_id=secrets.token_hex(8),
        user_id=owner.id,
        url=url,
        events=chosen,
        description=description,
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


def update(
    session: Session,
    settings: WebhookSettings,
    owner: User,
    endpoint: WebhookEndpoint,
    *,
    url: str,
    events: Iterable[str],
    description: str,
    actor_ip: str | None,
) -> list[str]:
    """Change the endpoint's URL, events and description after the same checks as
    creation (commits); returns the names of the fields that changed (none: no event)."""
    url, chosen, description = _checked(settings, url, events, description)
    before = {
        "url": endpoint.url,
        "events": list(endpoint.events),
        "description": endpoint.description,
    }
    after = {"url": url, "events": chosen, "description": description}
    changed = [name for name in after if before[name] != after[name]]
    if not changed:
        return []
    endpoint.url, endpoint.events, endpoint.description = url, chosen, description
    trail.record(
        session,
        "webhook.updated",
        actor=f"user:{owner.id}",
        actor_ip=actor_ip,
        target=f"webhook:{endpoint.public_id}",
        details={name: {"from": before[name], "to": after[name]} for name in changed},
    )
    session.commit()
    return changed


def roll_secret(
    session: Session,
    settings: WebhookSettings,
    owner: User,
    endpoint: WebhookEndpoint,
    *,
    actor_ip: str | None,
) -> NewEndpoint:
    """A new signing secret (commits): a new salt, so every delivery from now on,
    retries of older messages included, is signed with it and the old one verifies none."""
    endpoint.salt = secrets.token_bytes(32)
    trail.record(
        session,
        "webhook.secret_rolled",
        actor=f"user:{owner.id}",
        actor_ip=actor_ip,
        target=f"webhook:{endpoint.public_id}",
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


def delivery(
    session: Session, endpoint: WebhookEndpoint, delivery_id: int
) -> WebhookDelivery | None:
    """One of the endpoint's deliveries, or None (another endpoint's looks the same)."""
    return session.scalar(
        select(WebhookDelivery).where(
            WebhookDelivery.id == delivery_id, WebhookDelivery.endpoint_id == endpoint.id
        )
    )


def resend(
    session: Session,
    owner: User,
    endpoint: WebhookEndpoint,
    sent: WebhookDelivery,
    *,
    actor_ip: str | None,
) -> None:
    """Send a delivered or failed message again, now, with the same `webhook-id` (so a
    receiver that already has it can tell), signed with the endpoint's current secret
    (commits). A message still pending is already on its way: refused."""
    if sent.state == "pending":
        raise WebhookRequestError("this message is still being sent; wait for its result")
    sent.state = "pending"
    sent.next_attempt_at = utcnow()
    sent.lease_until = None
    trail.record(
        session,
        "webhook.resent",
        actor=f"user:{owner.id}",
        actor_ip=actor_ip,
        target=f"webhook:{endpoint.public_id}",
        details={"msg_id": sent.msg_id, "event": sent.event_type},
    )
    session.commit()


def pretty_payload(sent: WebhookDelivery) -> str:
    """The body as sent, indented for reading (the stored text when it is not JSON)."""
    try:
        return json.dumps(json.loads(sent.payload), indent=2, ensure_ascii=False)
    except ValueError:
        return sent.payload


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
