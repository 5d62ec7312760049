"""Mails to an account's owner when something about it changes (issue 19, point 6).

Security notices (a new device, the password or second factor changed, a key reported
leaked) always go out; the others can be turned off on /account. Rendered in the
request, queued on the mailer (app/mail.py), sent from the background.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import click
from flask import current_app, render_template, url_for
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import times
from app.cli import CommandGroup
from app.keys import lifecycle
from app.keys.leaks import Leaked
from app.mail import Mail, mailer
from app.models import ApiKey, User
from app.models._types import utcnow


@dataclass(frozen=True)
class Kind:
    subject: str
    label: str  # on /account, for the switch (optional ones)
    security: bool


KINDS: dict[str, Kind] = {
    "new_device": Kind("New log-in to your Keyledger account", "A log-in from a new device", True),
    "password_changed": Kind("Your Keyledger password was changed", "Password changed", True),
    "2fa_changed": Kind(
        "Two-factor sign-in changed on your account", "Second factor changed", True
    ),
    "key_leaked": Kind("One of your API keys was reported leaked", "A key reported leaked", True),
    "key_revoked": Kind(
        "An administrator revoked one of your API keys", "A key revoked by an admin", False
    ),
    "key_expiring": Kind("An API key of yours expires soon", "A key about to expire", False),
}
OPTIONAL = tuple(k for k, v in KINDS.items() if not v.security)


class Recipient(Protocol):
    """Who a notice goes to: a User, or what a query read of one."""

    email: str
    notices_off: str


def turned_off(user: Recipient) -> set[str]:
    return {k for k in (user.notices_off or "").split() if k in OPTIONAL}


def set_turned_off(session: Session, user: User, off: Iterable[str]) -> None:
    """Store the optional notices the owner turned off (security ones cannot be); commits."""
    user.notices_off = " ".join(sorted({k for k in off if k in OPTIONAL}))
    session.commit()


def send(user: Recipient, kind: str, **facts: str) -> bool:
    """Queue the notice `kind` to `user` unless they turned it off; needs a request
    context (the account link). False when not sent."""
    spec = KINDS[kind]
    if kind in turned_off(user) or not getattr(user, "is_active", True):
        return False
    account = url_for("auth.account", _external=True)
    context = {"kind": kind, "spec": spec, "facts": facts, "account_url": account, "user": user}
    mailer().send(
        Mail(
            to=user.email,
            subject=spec.subject,
            text=render_template("mail/notice.txt", **context),
            html=render_template("mail/notice.html", **context),
        )
    )
    return True


def keys_leaked(found: Iterable[Leaked]) -> None:
    """Tell each owner which of their keys was found in public and revoked."""
    for leaked in found:
        send(
            leaked, "key_leaked", key=leaked.name, found_at=leaked.location, state="revoked at once"
        )


def send_expiring(session: Session, warning_days: int, now: datetime | None = None) -> int:
    """Mail each owner once about every live key of theirs in its warning window
    (app.keys.lifecycle.is_expiring: a share of its lifetime, at most `warning_days`,
    KEY_EXPIRING_DAYS); needs a request context for the links (the CLI
    makes one from PUBLIC_URL). Returns how many mails were queued; commits."""
    now = now or utcnow()
    rows = session.execute(
        select(ApiKey, User)
        .join(User, User.id == ApiKey.user_id)
        .where(
            ApiKey.revoked_at.is_(None),
            ApiKey.expires_at > now,
            ApiKey.expires_at <= now + timedelta(days=warning_days),
            ApiKey.expiry_notified_at.is_(None),
        )
        .order_by(ApiKey.id)
    ).all()
    sent = 0
    for key, user in rows:
        if not lifecycle.is_expiring(key, now, warning_days):
            continue  # a new short-lived key: not yet
        key.expiry_notified_at = now
        if send(
            user,
            "key_expiring",
            key=f"{key.name} ({key.public_id})",
            expires=f"{times.display(key.expires_at)} UTC",
        ):
            sent += 1
    session.commit()
    return sent


notices_cli = CommandGroup("notices", help="Mails to account owners.")


@notices_cli.command("expiring")
def expiring_command() -> None:
    """Mail owners about keys expiring within KEY_EXPIRING_DAYS (run daily, e.g. cron)."""
    from app.extensions import db

    base = str(current_app.config.get("PUBLIC_URL") or "http://localhost:5000")
    with current_app.test_request_context(base_url=base):
        sent = send_expiring(db.session, int(current_app.config.get("KEY_EXPIRING_DAYS", 7)))
    from app.mail import mailer as get_mailer

    get_mailer().wait(60)
    click.echo(f"{sent} expiry notice{'' if sent == 1 else 's'} sent.")
