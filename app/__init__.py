"""Keyledger: self-service API keys with a tamper-evident audit trail."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import event
from werkzeug.middleware.proxy_fix import ProxyFix

from app import config as settings
from app.extensions import csrf, db, login_manager, migrate
from app.flask_app import Keyledger, browser_only

ROOT = Path(__file__).resolve().parent.parent


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build an app from the environment, with `config` overriding (tests pass theirs).

    Each step binds one kind of thing to this app; importing the package binds nothing.
    """
    app = _make_app(config)
    register_database(app)
    register_extensions(app)
    register_services(app)
    register_blueprints(app)
    register_errorhandlers(app)
    register_request_hooks(app)
    register_template_filters(app)
    register_commands(app)
    register_observability(app)
    if not app.debug and not app.testing:
        logging.basicConfig(level=logging.INFO)
    return app


def _make_app(config: dict[str, Any] | None) -> Flask:
    """The Flask object with its settings: embedded defaults < environment < `config`."""
    conf: dict[str, Any] = dict(settings.DEFAULTS)
    conf.update(settings.from_env())
    conf.update(config or {})
    settings.ensure_secrets(conf)
    settings.production_defaults(conf)  # Secure __Host- cookies and HSTS in production

    app = Keyledger(
        __name__,
        instance_path=str(Path(conf["INSTANCE_PATH"]).resolve()),
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    app.config.update(conf)
    from app.web import DatabaseInt

    app.url_map.converters["int"] = DatabaseInt  # before any route is added
    if app.config.get("SESSION_COOKIE_SECURE") and app.config["SESSION_COOKIE_NAME"] == "session":
        # ASVS 3.4.4: a __Host- cookie is HTTPS-only, host-only and path=/, so a sibling
        # subdomain or plain-HTTP page cannot plant or overwrite it.
        app.config["SESSION_COOKIE_NAME"] = "__Host-session"
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)

    if app.config["PROXY_FIX_HOPS"]:
        hops = int(app.config["PROXY_FIX_HOPS"])
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)
    return app


def register_database(app: Flask) -> None:
    """SQLAlchemy and migrations; the engine's connect hooks (deadlines, SQLite pragmas)."""
    from app import deadlines
    from app.models._types import render_item

    _bound_waits(app)
    _private_sqlite_file(str(app.config["SQLALCHEMY_DATABASE_URI"]))
    db.init_app(app)
    with app.app_context():
        engine = db.engine
        deadlines.install(engine, app.config)
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
    migrate.init_app(
        app, db, directory=str(ROOT / "migrations"), render_as_batch=True, render_item=render_item
    )


def register_extensions(app: Flask) -> None:
    """CSRF, limits and logins (app/extensions.py holds the unbound objects; the app's
    own Limiter is made here, app/limiter.py). Their app-wide hooks serve browsers: the
    API skips them (app/flask_app.py)."""
    from app import limiter, models

    limiter.init_app(app)
    with browser_only(app):
        csrf.init_app(app)
        login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message_category = "info"

    @login_manager.user_loader
    def load_user(user_id: str) -> models.User | None:
        # Only a live session record (app/web.py) can carry a user id here.
        user = db.session.get(models.User, int(user_id)) if user_id.isdigit() else None
        return user if user is not None and user.is_active else None


def register_services(app: Flask) -> None:
    """The app's own per-app state in app.extensions, each read from the config once.

    No background thread starts here: each starts on first use in the process that
    serves, so nothing runs before gunicorn's fork.
    """
    from app import billing, mail, usage
    from app.accounts import Passwords
    from app.audit import service as audit_service
    from app.keys import cache as key_cache
    from app.keys import unshown as unshown_keys
    from app.keys.lifecycle import KeyPolicy
    from app.sessions import Lifetimes
    from app.webhooks import service as webhooks

    app.extensions["keyledger.passwords"] = Passwords(app.config)
    app.extensions["keyledger.key_policy"] = KeyPolicy.from_config(app.config)
    app.extensions["keyledger.session_lifetimes"] = Lifetimes.from_config(app.config)
    key_cache.init_app(app)  # with the session hooks that keep it current
    unshown_keys.init_app(app)  # keys whose creation went unconfirmed, revoked later
    usage.init_app(app)  # the batched recorder, and the process's at-fork/at-exit hooks
    billing.init_app(app)  # BILLING_PLANS, checked once
    audit_service.init_app(app)  # the log's signing key and anchor; its sealer
    webhooks.init_app(app)  # settings and the dispatcher
    mail.init_app(app)  # MAIL_URL checked once; production refuses to start without it


def register_blueprints(app: Flask) -> None:
    """The web layer: portal, admin, auth, the transparency pages and the JSON API."""
    from app import limiter
    from app.admin import bp as admin_bp
    from app.api import bp as api_bp
    from app.api import init_app as init_api
    from app.auth import bp as auth_bp
    from app.portal import bp as portal_bp
    from app.transparency.routes import bp as transparency_bp

    with browser_only(app):  # their app-wide hooks (the two-factor gate) serve pages
        app.register_blueprint(auth_bp)
        app.register_blueprint(portal_bp)
        app.register_blueprint(admin_bp, url_prefix="/admin")
    app.register_blueprint(api_bp, url_prefix="/api/v1")
    init_api(app)  # its per-app state and its Flask-Limiter filter
    app.register_blueprint(transparency_bp, url_prefix="/audit")
    csrf.exempt(api_bp)
    limiter.bind_views(app)  # the views' declared limits, on this app's own Limiter


def register_errorhandlers(app: Flask) -> None:
    """Errors as HTML or JSON by path (app/errors.py)."""
    from app import errors

    errors.register(app)


def register_request_hooks(app: Flask) -> None:
    """Server-side sessions, security headers and the templates' context (app/web.py)."""
    from app import web

    web.register(app)


def register_template_filters(app: Flask) -> None:
    """`{{ at|utc }}`, `{{ at|utc('date') }}`: every time a page shows (app/times.py);
    `when`, `status_badge`, `chips`, `test_badge`, `email_parts`: a row's small pieces,
    `key_rows` the keys list's rows (app/markup.py)."""
    from app import markup, times

    app.add_template_filter(times.display, "utc")
    markup.register(app)


def register_commands(app: Flask) -> None:
    """`flask users|keys|audit|usage|billing|webhooks|demo ...`."""
    from app import cli

    cli.register(app)


def register_observability(app: Flask) -> None:
    """Logs with request ids, /healthz, /readyz, /metrics."""
    from app import observability

    observability.init_app(app)


def _private_sqlite_file(uri: str) -> None:
    """Create a SQLite database file 0600 before SQLite does (it would follow the umask,
    often 0644): it holds key hashes and the audit trail, like the secrets beside it.
    SQLite gives its -wal and -shm files the database file's mode."""
    from sqlalchemy.engine import make_url

    url = make_url(uri)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return
    if url.database.startswith("file:"):
        return  # a URI filename: the operator chose its options
    path = Path(url.database)
    if path.parent.is_dir() and not path.exists():  # a missing folder stays an error
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _bound_waits(app: Flask) -> None:
    """An unreachable database or Redis must give the API a quick 503, not a hang."""
    uri = str(app.config["SQLALCHEMY_DATABASE_URI"])
    if uri.startswith("postgresql"):
        from app.deadlines import postgresql_connect_args

        options = dict(app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
        options["connect_args"] = {
            **postgresql_connect_args(app.config),
            **options.get("connect_args", {}),
        }
        options.setdefault("pool_timeout", float(app.config["DATABASE_CONNECT_TIMEOUT"]))
        app.config["SQLALCHEMY_ENGINE_OPTIONS"] = options
    if settings.is_redis(app.config.get("RATELIMIT_STORAGE_URI")):
        app.config.setdefault(
            "RATELIMIT_STORAGE_OPTIONS", {"socket_connect_timeout": 0.5, "socket_timeout": 0.5}
        )
        if str(app.config["RATELIMIT_STORAGE_URI"]).startswith("redis+sentinel://"):
            # The same bounds on the sentinels themselves (asked for the master).
            options = app.config["RATELIMIT_STORAGE_OPTIONS"]
            options.setdefault(
                "sentinel_kwargs", {"socket_connect_timeout": 0.5, "socket_timeout": 0.5}
            )


def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    """Foreign keys and WAL on SQLite (the lock wait is app/deadlines.py's)."""
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()
