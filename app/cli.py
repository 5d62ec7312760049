"""`flask users ...`; each domain package adds its own command group here."""

from __future__ import annotations

import sys

import click
from flask import Flask
from flask.cli import AppGroup

from app import accounts
from app.config import TIERS
from app.extensions import db
from app.web import passwords

users = AppGroup("users", help="Manage accounts.")


def _read_password() -> str:
    """Prompt with confirmation on a terminal; read one line when stdin is piped."""
    if sys.stdin.isatty():
        return click.prompt("Password", hide_input=True, confirmation_prompt=True)
    line = sys.stdin.readline()
    return line.rstrip("\r\n")


@users.command("create")
@click.argument("email")
@click.option("--admin", is_flag=True, help="Give the account access to /admin.")
@click.option("--tier", type=click.Choice(TIERS), default="basic", show_default=True)
def users_create(email: str, admin: bool, tier: str) -> None:
    """Create an account; the password comes from the prompt or stdin."""
    password = _read_password()
    try:
        user = accounts.create_user(
            db.session,
            passwords(),
            email=email,
            password=password,
            tier=tier,
            is_admin=admin,
            actor="cli",
        )
    except accounts.AccountError as exc:
        raise click.ClickException(str(exc)) from exc
    role = "admin" if admin else "user"
    click.echo(f"created {role} {user.email} (id {user.id}, tier {user.tier})")


@users.command("set-tier")
@click.argument("email")
@click.argument("tier", type=click.Choice(TIERS))
def users_set_tier(email: str, tier: str) -> None:
    """Change a user's tier, and with it every key's rate limit and lifetime cap."""
    user = accounts.find_user(db.session, email)
    if user is None:
        raise click.ClickException(f"no account for {email}")
    changed = accounts.set_tier(db.session, user, tier, actor="cli")
    click.echo(f"{user.email}: tier {user.tier}" + ("" if changed else " (unchanged)"))


def register(app: Flask) -> None:
    from app.audit.cli import audit

    app.cli.add_command(users)
    app.cli.add_command(audit)
    from app.usage.cli import usage

    app.cli.add_command(usage)
    from app.billing.cli import billing
    from app.demo import demo

    app.cli.add_command(billing)
    app.cli.add_command(demo)
