"""Send due webhook messages: one HTTP POST each, signed, with retries and backoff.

Several workers may run this at once: a worker claims a message by setting its lease
with a conditional UPDATE, so each attempt is made by one worker; a worker that dies
mid-attempt loses the lease and the message is tried again.
"""

from __future__ import annotations

import http.client
import logging
import socket
import ssl
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from app.models import WebhookDelivery, WebhookEndpoint
from app.models._types import utcnow
from app.webhooks import signing, targets
from app.webhooks.settings import WebhookSettings

log = logging.getLogger(__name__)
LEASE = timedelta(minutes=2)
BATCH = 50
USER_AGENT = "Keyledger-Webhooks/1"
MAX_RESPONSE = 64 * 1024


@dataclass(frozen=True)
class Attempt:
    status: int | None
    error: str | None
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def post(url: str, body: bytes, headers: dict[str, str], settings: WebhookSettings) -> Attempt:
    """POST once. Connects to the address that passed the target check; follows no
    redirect (a 3xx is a failed attempt); waits at most `timeout` per connect and read."""
    started = time.perf_counter()

    def done(status: int | None, error: str | None) -> Attempt:
        return Attempt(status, error, int((time.perf_counter() - started) * 1000))

    try:
        scheme, host, port, path = targets.parse_url(url)
        address = targets.resolve(host, port, allow_private=settings.allow_private)
    except targets.TargetRefused as exc:
        return done(None, str(exc)[:200])
    conn: http.client.HTTPConnection | None = None
    try:
        sock = socket.create_connection((address, port), timeout=settings.timeout)
        if scheme == "https":
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        conn = http.client.HTTPConnection(host, port, timeout=settings.timeout)
        conn.sock = sock
        conn.request(
            "POST",
            path,
            body=body,
            headers={
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                **headers,
            },
        )
        response = conn.getresponse()
        response.read(MAX_RESPONSE)
        return done(response.status, None)
    except (OSError, http.client.HTTPException) as exc:
        return done(None, f"{type(exc).__name__}: {exc}"[:200])
    finally:
        if conn is not None:
            conn.close()


def next_delay(settings: WebhookSettings, attempts: int) -> timedelta:
    """Exponential backoff: base, 3 x base, 9 x base, ... after each failed attempt."""
    return timedelta(seconds=settings.retry_base * 3 ** max(attempts - 1, 0))


def _claim(session: Session, delivery_id: int, now: datetime) -> bool:
    claimed = session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.state == "pending",
            or_(WebhookDelivery.lease_until.is_(None), WebhookDelivery.lease_until < now),
        )
        .values(lease_until=now + LEASE)
    ).rowcount
    session.commit()
    return claimed == 1


def _retry_wait(settings: WebhookSettings, endpoint: WebhookEndpoint) -> int | None:
    """Spend one retry from the endpoint's budget; seconds to wait when it is spent.

    An unreachable limit storage lets the retry through: the budget protects the
    endpoint, and the message's own backoff still bounds it."""
    from app import ratelimit

    try:
        if ratelimit.spend_budget(settings.retry_budget, "webhook-retries", endpoint.public_id):
            return None
        return ratelimit.budget_spent(
            settings.retry_budget, "webhook-retries", endpoint.public_id
        ) or int(settings.retry_base)
    except Exception:  # the storage's own errors (redis, limits) are not one class
        log.warning("webhook retry budget unreadable; retrying anyway", exc_info=True)
        return None


def deliver_due(session: Session, settings: WebhookSettings, now: datetime | None = None) -> int:
    """Attempt every message that is due; returns how many attempts were made.

    Retries spend the endpoint's budget (settings.retry_budget): once it is spent, the
    endpoint's retries wait for it, while first attempts still go out."""
    now = now or utcnow()
    due = (
        session.execute(
            select(WebhookDelivery.id)
            .where(
                WebhookDelivery.state == "pending",
                WebhookDelivery.next_attempt_at <= now,
                or_(WebhookDelivery.lease_until.is_(None), WebhookDelivery.lease_until < now),
            )
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
            .limit(BATCH)
        )
        .scalars()
        .all()
    )
    session.commit()
    attempts = 0
    for delivery_id in due:
        if not _claim(session, delivery_id, now):
            continue  # another worker has it
        delivery = session.get(WebhookDelivery, delivery_id)
        endpoint = session.get(WebhookEndpoint, delivery.endpoint_id)
        session.commit()  # no transaction stays open across the HTTP call
        if endpoint.disabled_at is not None:
            delivery.state, delivery.last_error = "failed", "endpoint removed"
            delivery.lease_until = None
            session.commit()
            continue
        if delivery.attempts > 0:
            wait = _retry_wait(settings, endpoint)
            if wait is not None:
                delivery.next_attempt_at = now + timedelta(seconds=max(wait, 1))
                delivery.lease_until = None
                session.commit()
                continue
        body = delivery.payload.encode()
        secret = signing.derive_secret(settings.pepper, endpoint.salt)
        sent_at = utcnow()
        result = post(
            endpoint.url,
            body,
            signing.headers(secret, delivery.msg_id, int(sent_at.timestamp()), body),
            settings,
        )
        attempts += 1
        delivery.attempts += 1
        delivery.last_attempt_at = sent_at
        delivery.last_status = result.status
        delivery.last_error = result.error
        delivery.last_duration_ms = result.duration_ms
        delivery.lease_until = None
        if result.ok:
            delivery.state = "delivered"
        else:
            tried_at = max(now, sent_at)
            deadline = delivery.created_at + timedelta(hours=settings.retry_hours)
            if tried_at >= deadline:
                delivery.state = "failed"
                log.warning(
                    "webhook %s to endpoint %s given up after %d attempts",
                    delivery.msg_id,
                    endpoint.public_id,
                    delivery.attempts,
                )
            else:  # the last try falls at the deadline itself
                retry_at = tried_at + next_delay(settings, delivery.attempts)
                delivery.next_attempt_at = min(retry_at, deadline)
        session.commit()
    return attempts
