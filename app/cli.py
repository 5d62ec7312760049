"""`flask users ...`; each domain package adds its own command group here."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click
from flask import Flask
from flask.cli import AppGroup, ScriptInfo
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError

from app import accounts
from app.config import TIERS
from app.extensions import db
from app.models import User
from app.web import passwords, session_lifetimes

T = TypeVar("T")


@contextmanager
def progress(
    items: Iterable[T], label: str, length: int, err: bool = False
) -> Iterator[Iterable[T]]:
    """A bar on a terminal; otherwise a line at every tenth (logs, CI, `| tee`), so a
    long command is never silent. `err`: on stderr, for a command whose stdout is its
    data (an export piped to a file)."""
    stream = sys.stderr if err else sys.stdout
    if stream.isatty():
        with click.progressbar(items, label=f"{label:<8}", length=length, file=stream) as bar:
            yield bar
    else:
        yield _progress_lines(items, label, length, err)


def _progress_lines(items: Iterable[T], label: str, length: int, err: bool) -> Iterator[T]:
    started = time.monotonic()
    step = max(1, length // 10)
    for done, item in enumerate(items, 1):
        yield item
        if done % step == 0 or done == length:
            took = time.monotonic() - started
            click.echo(
                f"{label}: {done}/{length} ({done * 100 // length} %), {took:.0f} s", err=err
            )


class CommandGroup(AppGroup):
    """Every `flask` group of ours: a command run on a database that was never migrated
    (or is behind this code) says what to run instead of printing SQLAlchemy's
    traceback. Checked only after a database error, so offline commands never need one."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DBAPIError:
            problem = _schema_problem(ctx.ensure_object(ScriptInfo).load_app())
            if problem is None:
                raise
            raise click.ClickException(problem) from None


def _schema_problem(app: Flask) -> str | None:
    """What is wrong with the database's schema, or None if it is at this code's head."""
    from alembic.script import ScriptDirectory

    with app.app_context():
        where = db.engine.url.render_as_string(hide_password=True)
        try:
            with db.engine.connect() as conn:
                current = set()
                if inspect(conn).has_table("alembic_version"):
                    current = set(conn.scalars(text("SELECT version_num FROM alembic_version")))
        except DBAPIError:
            return None  # unreachable, or another fault: the original error says more
        config = app.extensions["migrate"].migrate.get_config()
        heads = set(ScriptDirectory.from_config(config).get_heads())
    todo = "run `flask db upgrade` (or `make serve` once), then try again"
    if not current:
        return f"the database {where} was never migrated: {todo}"
    if current != heads:
        return (
            f"the database {where} is at revision {', '.join(sorted(current))}, this "
            f"version needs {', '.join(sorted(heads))}: {todo}"
        )
    return None


users = CommandGroup("users", help="Manage accounts.")


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


def _find(email: str) -> User:
    user = accounts.find_user(db.session, email)
    if user is None:
        raise click.ClickException(f"no account for {email}")
    return user


def _state(user: User) -> str:
    if user.closed_at is not None:
        return "closed"
    return "disabled" if user.disabled_at is not None else "active"


@users.command("list")
def users_list() -> None:
    """Every account: id, email, tier, role, state, live sessions, live keys."""
    from sqlalchemy import func, select

    from app.models import ApiKey, UserSession
    from app.models._types import utcnow

    now = utcnow()
    keys = dict(
        db.session.execute(
            select(ApiKey.user_id, func.count())
            .where(ApiKey.revoked_at.is_(None), ApiKey.expires_at > now)
            .group_by(ApiKey.user_id)
        ).all()
    )
    lifetimes = session_lifetimes()
    live = dict(
        db.session.execute(
            select(UserSession.user_id, func.count())
            .where(
                UserSession.last_seen_at >= now - lifetimes.idle,
                UserSession.created_at >= now - lifetimes.absolute,
            )
            .group_by(UserSession.user_id)
        ).all()
    )
    click.echo(f"{'id':>5}  {'email':<40} {'tier':<10} {'role':<5} {'state':<8} sessions keys")
    for user in accounts.list_users(db.session):
        click.echo(
            f"{user.id:>5}  {user.email:<40} {user.tier:<10} "
            f"{'admin' if user.is_admin else 'user':<5} {_state(user):<8} "
            f"{live.get(user.id, 0):>8} {keys.get(user.id, 0):>4}"
        )


@users.command("disable")
@click.argument("email")
def users_disable(email: str) -> None:
    """Block an account: every live key revoked and every session ended, at once."""
    user = _find(email)
    if user.disabled_at is not None:
        click.echo(f"{user.email}: already disabled")
        return
    try:
        revoked = accounts.disable_user(db.session, user, actor="cli")
    except accounts.AccountError as exc:
        db.session.rollback()
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{user.email}: disabled; {revoked} key(s) revoked, sessions ended")


@users.command("enable")
@click.argument("email")
def users_enable(email: str) -> None:
    """Let a disabled account log in again (revoked keys stay revoked)."""
    user = _find(email)
    try:
        changed = accounts.enable_user(db.session, user, actor="cli")
    except accounts.AccountError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{user.email}: " + ("enabled" if changed else "was not disabled"))


@users.command("set-admin")
@click.argument("email")
@click.option("--remove", is_flag=True, help="Take admin away (never from the last admin).")
def users_set_admin(email: str, remove: bool) -> None:
    """Grant admin, or with --remove take it away."""
    user = _find(email)
    try:
        changed = accounts.set_admin(db.session, user, not remove, actor="cli")
    except accounts.AccountError as exc:
        db.session.rollback()
        raise click.ClickException(str(exc)) from exc
    role = "user" if remove else "admin"
    click.echo(f"{user.email}: {role}" + ("" if changed else " (unchanged)"))


@users.command("reset-password")
@click.argument("email")
def users_reset_password(email: str) -> None:
    """Set a new password (prompt or stdin); every session of the account ends."""
    user = _find(email)
    password = _read_password()
    try:
        ended = accounts.reset_password(db.session, passwords(), user, password, actor="cli")
    except accounts.AccountError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{user.email}: password reset; {ended} session(s) ended")


def register(app: Flask) -> None:
    from app.audit.cli import audit

    app.cli.add_command(users)
    app.cli.add_command(audit)
    from app.usage.cli import usage

    app.cli.add_command(usage)
    from app.webhooks.cli import webhooks

    app.cli.add_command(webhooks)
    from app.billing.cli import billing
    from app.demo import demo

    app.cli.add_command(billing)
    app.cli.add_command(demo)
    from app.notices import notices_cli

    app.cli.add_command(notices_cli)
