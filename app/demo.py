"""`flask demo seed`: a database full of realistic traffic, for demos and benchmarks.

Accounts and keys are made with the domain functions (audited as usual); usage goes
through the app's usage recorder, so raw events, minute/hour/day roll-ups, latency
bins and the validation audit events are written by the same flush code as in
production. Traffic follows a day/night and weekday rhythm, a few keys carry most of
it, and a small share fails (bad keys from a handful of noisy addresses, 429s, 5xx).
"""

from __future__ import annotations

import math
import random
from bisect import bisect
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from typing import TypeVar

import click
from flask import current_app
from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session, aliased

from app import accounts, outcomes
from app.audit import trail
from app.billing import snapshot
from app.cli import CommandGroup, progress
from app.config import TIERS
from app.extensions import db
from app.keys import lifecycle
from app.models import ApiKey, TierPeriod, User
from app.usage import UsageEvent, recorder
from app.web import key_policy, passwords

F = TypeVar("F", bound=Callable[..., object])

demo = CommandGroup("demo", help="Demo data: accounts, keys and a month of traffic.")

PASSWORD = "keyledger demo password"  # noqa: S105 (demo accounts, printed on purpose)
ENDPOINTS = (
    ("/v1/orders", "GET"),
    ("/v1/orders", "POST"),
    ("/v1/search", "GET"),
    ("/v1/users", "GET"),
    ("/v1/payments", "POST"),
    ("/v1/items", "GET"),
)
STATUSES = (200, 201, 204, 304, 400, 401, 403, 404, 422, 429, 500, 502, 503)
STATUS_WEIGHTS = (860, 40, 15, 10, 15, 4, 8, 20, 8, 12, 4, 2, 2)
FAILURE_REASONS = ("invalid_key", "malformed_key", "revoked", "expired", "insufficient_scope")
FAILURE_WEIGHTS = (50, 25, 10, 10, 5)
TIER_WEIGHTS = (70, 25, 5)


class _SharedHash:
    """Every demo account gets the same password: hash it once, not a hundred times."""

    def __init__(self, real: accounts.Passwords) -> None:
        self._hash = real.hash(PASSWORD)

    def hash(self, password: str) -> str:
        return self._hash


def _hour_weights(start: datetime, hours: int) -> list[float]:
    """Busy afternoons (UTC), quiet nights, lighter weekends."""
    weights = []
    for h in range(hours):
        at = start + timedelta(hours=h)
        diurnal = 0.25 + math.sin(math.pi * ((at.hour - 4) % 24) / 24) ** 2
        weights.append(diurnal * (0.55 if at.weekday() >= 5 else 1.0))
    return weights


# Sizes: the default takes about a minute; --full is a month of a busier service.
SIZES = {
    "default": {"n_users": 20, "n_keys": 100, "n_events": 50_000, "days": 30},
    "full": {"n_users": 100, "n_keys": 1000, "n_events": 1_000_000, "days": 30},
}


def _size_option(flag: str, name: str, kind: click.IntRange) -> Callable[[F], F]:
    small, full = SIZES["default"][name], SIZES["full"][name]
    return click.option(
        flag, name, type=kind, default=None, show_default=f"{small}, with --full {full}"
    )


@demo.command("seed")
@_size_option("--users", "n_users", click.IntRange(1, 100_000))
@_size_option("--keys", "n_keys", click.IntRange(1, 1_000_000))
@_size_option("--events", "n_events", click.IntRange(0, 100_000_000))
@_size_option("--days", "days", click.IntRange(1, 365))
@click.option("--full", is_flag=True, help="The full size: 1,000,000 requests (minutes).")
@click.option("--seed", "rng_seed", type=int, default=1, show_default=True, help="Random seed.")
def seed(
    n_users: int | None,
    n_keys: int | None,
    n_events: int | None,
    days: int | None,
    full: bool,
    rng_seed: int,
) -> None:
    """Create demo-N@example.com accounts (password "keyledger demo password"), their
    keys, and EVENTS requests spread over the last DAYS days."""
    size = SIZES["full" if full else "default"]
    n_users = size["n_users"] if n_users is None else n_users
    n_keys = size["n_keys"] if n_keys is None else n_keys
    n_events = size["n_events"] if n_events is None else n_events
    days = size["days"] if days is None else days
    rng = random.Random(rng_seed)
    # The traffic has a stream of its own: how many draws it takes depends on the clock
    # (the day/night rhythm is anchored to the hour the seed runs), and it must not
    # shift which accounts, keys, tier changes and revocations the seed picks.
    traffic = random.Random(f"{rng_seed}/traffic")
    session = db.session
    policy = key_policy()
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(days=days)

    shared = _SharedHash(passwords())
    users: list[User] = []
    with progress(range(n_users), "Accounts", n_users) as bar:
        for i in bar:
            email = f"demo-{i + 1}@example.com"
            user = accounts.find_user(session, email)
            if user is None:
                tier = rng.choices(TIERS, TIER_WEIGHTS)[0]
                user = accounts.create_user(
                    session, shared, email=email, password=PASSWORD, tier=tier, actor="cli"
                )  # type: ignore[arg-type]
            users.append(user)

    keys: list[ApiKey] = []
    with progress(range(n_keys), "Keys", n_keys) as bar:
        for i in bar:
            owner = users[i % n_users] if i < n_users else rng.choice(users)
            cap = policy.max_lifetime(owner.tier)
            new = lifecycle.create_key(
                session,
                policy,
                owner,
                name=f"{rng.choice(('backend', 'worker', 'mobile', 'etl', 'web'))}-{i + 1}",
                scopes=rng.choice((["keys:read"], ["keys:read", "usage:read"], ["keys:write"])),
                lifetime_days=rng.randint(min(30, cap), cap),
                actor=owner,
            )
            key = new.key
            # Backdate: four keys in ten appear during the window, the rest before it.
            if rng.random() < 0.4:
                key.created_at = start + timedelta(seconds=rng.uniform(0, days * 86400))
            else:
                key.created_at = start - timedelta(days=rng.uniform(0, 60))
            key.expires_at = max(key.expires_at, key.created_at + timedelta(days=cap))
            keys.append(key)
    key_facts = [(k.id, k.user_id, k.public_id, k.created_at) for k in keys]
    tier_of = {u.id: u.tier for u in users}
    # An account exists from before its oldest key: billing bills its plan from then on.
    oldest = {u.id: u.created_at for u in users}
    for _, owner_id, _, created in key_facts:
        oldest[owner_id] = min(oldest[owner_id], created)
    for user in users:
        if oldest[user.id] < user.created_at:
            session.execute(
                update(TierPeriod)
                .where(TierPeriod.user_id == user.id, TierPeriod.since == user.created_at)
                .values(since=oldest[user.id])
            )
            user.created_at = oldest[user.id]
    session.commit()  # and no transaction left open while the traffic is written
    ips = {
        kid: [f"198.51.100.{rng.randint(1, 254)}" for _ in range(rng.randint(1, 3))]
        for kid, *_ in key_facts
    }
    noisy = [f"203.0.113.{rng.randint(1, 254)}" for _ in range(8)]

    # Who calls when: a few keys carry most of the traffic; afternoons are busy.
    hours = days * 24
    hour_cum = list(accumulate(_hour_weights(start, hours)))
    key_cum = list(accumulate(1 / (r + 1) ** 0.9 for r in range(len(key_facts))))
    status_cum = list(accumulate(STATUS_WEIGHTS))

    changers = rng.sample(users, min(len(users), max(1, n_users // 20)))
    new_tier = {u.id: rng.choice([t for t in TIERS if t != u.tier]) for u in changers}

    def sample_time(created: datetime) -> datetime:
        h = bisect(hour_cum, traffic.random() * hour_cum[-1])
        at = start + timedelta(hours=min(h, hours - 1), seconds=traffic.uniform(0, 3600))
        if at < created:
            at = created + (now - created) * traffic.random()
        return min(at, now - timedelta(seconds=1))

    # Generated in time order, so that the tier changes below fall mid-stream.
    plan: list[tuple[datetime, int]] = []
    for _ in range(n_events):
        k = bisect(key_cum, traffic.random() * key_cum[-1])
        plan.append((sample_time(key_facts[k][3]), k))
    plan.sort()
    change_at = n_events // 2

    rec = recorder()
    batch = int(current_app.config.get("USAGE_BATCH_MAX", 5000))
    rate_limited_seen: set[tuple[int, int]] = set()
    with progress(plan, "Requests", n_events) as bar:
        for i, (at, k) in enumerate(bar):
            if i == change_at:
                for user in changers:  # upgrades and downgrades mid-month
                    accounts.set_tier(session, user, new_tier[user.id], actor="cli", at=at)
                    tier_of[user.id] = new_tier[user.id]
            key_id, owner_id, public_id, _ = key_facts[k]
            status = STATUSES[bisect(status_cum, traffic.random() * status_cum[-1])]
            endpoint, method = ENDPOINTS[traffic.randrange(len(ENDPOINTS))]
            ms = traffic.lognormvariate(math.log(18), 0.7) * (6 if status >= 500 else 1)
            ip = traffic.choice(ips[key_id])
            rec.record(
                UsageEvent(
                    key_id, owner_id, endpoint, method, status, ms, ip, at, tier_of[owner_id]
                )
            )
            if status == 429 and (key_id, int(at.timestamp()) // 60) not in rate_limited_seen:
                rate_limited_seen.add((key_id, int(at.timestamp()) // 60))
                rec.audit(
                    "key.rate_limited",
                    actor=f"key:{public_id}",
                    actor_ip=ip,
                    target=f"key:{public_id}",
                    outcome="denied",
                    details={
                        "error": "rate_limited",
                        "limit": "key",
                        "recorded": "first per key (or IP) and minute",
                    },
                    at=at,
                )
            if traffic.random() < 0.01:  # a failed validation near this moment
                _failed_validation(rec, traffic, at, public_id, ip, noisy)
            if (i + 1) % batch == 0:
                rec.flush()
        rec.flush()

    click.echo("Security events: failed log-ins, unauthorized access, revocations, rotations")
    _security_events(rng, users, keys, start, now, max(1, n_events // 5000), noisy)
    # A stream of its own: the same seed picks the same keys whatever the traffic was.
    _revoke_and_rotate(random.Random(f"{rng_seed}/picks"))
    rec.flush()
    # What `flask billing close` does: the first billing view then reads day snapshots.
    click.echo("Billing snapshot of the closed days")
    closed, _ = snapshot.close_all(db.engine, now=datetime.now(UTC))
    click.echo(
        f"seeded {len(users)} accounts, {len(keys)} keys, {n_events} requests over {days} days "
        f"(billing snapshot: {closed.days} days); "
        f"log in as demo-1@example.com with password {PASSWORD!r}"
    )


def _failed_validation(rec, rng: random.Random, at, public_id: str, ip: str, noisy) -> None:
    """The audit event the API writes for a failed validation (app/api/hooks.py)."""
    reason = rng.choices(FAILURE_REASONS, FAILURE_WEIGHTS)[0]
    known = reason in ("revoked", "expired", "insufficient_scope")
    actor = f"key:{public_id}" if known else "anonymous"
    rec.audit(
        "key.validation_failed",
        actor=actor,
        actor_ip=ip if known else rng.choice(noisy) if rng.random() < 0.7 else ip,
        target=actor if known else None,
        outcome=outcomes.OUTCOMES[reason].audit_outcome,
        details={"error": reason, "endpoint": "/api/v1/keys/validate"},
        at=at,
    )


def _security_events(rng, users, keys, start, now, n, noisy) -> None:
    """Failed logins and unauthorized attempts."""
    session = db.session
    span = (now - start).total_seconds()
    for _ in range(n):
        user = rng.choice(users)
        at = start + timedelta(seconds=rng.uniform(0, span))
        trail.record(
            session,
            "user.login_failed",
            actor=f"user:{user.id}",
            actor_ip=rng.choice(noisy),
            target=f"user:{user.id}",
            outcome="failure",
            details={"email": user.email},
            at=at,
        )
    for _ in range(max(1, n // 5)):
        user = rng.choice(users)
        victim = rng.choice(keys)
        trail.record(
            session,
            "access.unauthorized",
            actor=f"user:{user.id}",
            actor_ip=rng.choice(noisy),
            target=f"key:{victim.public_id}",
            outcome="denied",
            details={"reason": "key belongs to another user"},
            at=start + timedelta(seconds=rng.uniform(0, span)),
        )
    session.commit()


def _revoke_and_rotate(picks: random.Random) -> None:
    """Some keys revoked, some rotated with a day's grace, as owners do."""
    session = db.session
    policy = key_policy()
    live = _live_keys(session)
    for key in picks.sample(live, min(len(live), max(1, len(live) // 30))):
        lifecycle.revoke_key(session, key, actor=key.owner, actor_ip="198.51.100.10")
    live = _live_keys(session)
    for key in picks.sample(live, min(len(live), max(1, len(live) // 30))):
        lifecycle.rotate_key(
            session, policy, key, grace="24h", actor=key.owner, actor_ip="198.51.100.11"
        )


def _live_keys(session: Session) -> list[ApiKey]:
    """Keys a person could still revoke or rotate: not revoked, not expired, and not
    already rotated (a key in its grace period has a successor; rotating it again is
    refused). In id order, so the same seed picks the same keys on every backend."""
    successor = aliased(ApiKey)
    return list(
        session.scalars(
            select(ApiKey)
            .where(
                ApiKey.revoked_at.is_(None),
                ApiKey.expires_at > datetime.now(UTC),
                ~exists().where(successor.rotated_from_id == ApiKey.id),
            )
            .order_by(ApiKey.id)
        )
    )
