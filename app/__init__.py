"""Keyledger: self-service API keys with a tamper-evident audit trail."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Engine
from werkzeug.middleware.proxy_fix import ProxyFix

from app import config as settings
from app.extensions import csrf, db, limiter, login_manager, migrate

ROOT = Path(__file__).resolve().parent.parent


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build an app from the environment, with `config` overriding (tests pass theirs)."""
    conf: dict[str, Any] = dict(settings.DEFAULTS)
    conf.update(settings.from_env())
    conf.update(config or {})
    settings.ensure_secrets(conf)
    settings.production_defaults(conf)

    app = Flask(
        __name__,
        instance_path=str(Path(conf["INSTANCE_PATH"]).resolve()),
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    app.config.update(conf)
    if app.config.get("SESSION_COOKIE_SECURE") and app.config["SESSION_COOKIE_NAME"] == "session":
        # ASVS 3.4.4: a __Host- cookie is HTTPS-only, host-only and path=/, so a sibling
        # subdomain or plain-HTTP page cannot plant or overwrite it.
        app.config["SESSION_COOKIE_NAME"] = "__Host-session"
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)

    if app.config["PROXY_FIX_HOPS"]:
        hops = int(app.config["PROXY_FIX_HOPS"])
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)

    _bound_waits(app)
    _private_sqlite_file(str(app.config["SQLALCHEMY_DATABASE_URI"]))
    db.init_app(app)
    with app.app_context():
        from app import deadlines

        deadlines.install(db.engine, app.config)
    from app.models._types import render_item

    migrate.init_app(
        app, db, directory=str(ROOT / "migrations"), render_as_batch=True, render_item=render_item
    )
    csrf.init_app(app)
    limiter.init_app(app)
    from app.ratelimit import spare_the_api

    spare_the_api(app)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message_category = "info"

    from app.accounts import Passwords
    from app.keys.lifecycle import KeyPolicy

    app.extensions["keyledger.passwords"] = Passwords(app.config)
    app.extensions["keyledger.key_policy"] = KeyPolicy.from_config(app.config)
    from app.sessions import Lifetimes

    app.extensions["keyledger.session_lifetimes"] = Lifetimes.from_config(app.config)
    from app.keys.cache import KeyCache
    from app.ratelimit import announce_key_change

    app.extensions["keyledger.key_cache"] = KeyCache(
        ttl=float(app.config["KEY_CACHE_TTL"]),
        max_age=float(app.config["KEY_CACHE_MAX_AGE"]),
        announce=announce_key_change,
    )

    from app.usage.recorder import BatchRecorder

    # Lazy: its flush thread starts on first use, in the worker, never before a fork.
    app.extensions["keyledger.usage"] = BatchRecorder.from_app(app)

    from app import billing

    billing.init_app(app)  # BILLING_PLANS, checked once

    from app.audit import service as audit_service

    # The audit log's signing key and anchor; its sealer thread starts on first request.
    audit_service.init_app(app)

    from app.webhooks import service as webhooks

    webhooks.init_app(app)

    from app import models

    @login_manager.user_loader
    def load_user(user_id: str) -> models.User | None:
        # Only a live session record (app/web.py) can carry a user id here.
        user = db.session.get(models.User, int(user_id)) if user_id.isdigit() else None
        return user if user is not None and user.is_active else None

    from app.admin import bp as admin_bp
    from app.api import bp as api_bp
    from app.auth import bp as auth_bp
    from app.billing.routes import bp as billing_bp
    from app.portal import bp as portal_bp

    app.register_blueprint(auth_bp)
    app.register_blueprint(portal_bp)
    app.register_blueprint(admin_bp, url_prefix="/admin")
    app.register_blueprint(billing_bp)
    app.register_blueprint(api_bp, url_prefix="/api/v1")
    from app.transparency.routes import bp as transparency_bp

    app.register_blueprint(transparency_bp, url_prefix="/audit")
    csrf.exempt(api_bp)

    from app import cli, errors, web

    errors.register(app)
    web.register(app)
    cli.register(app)
    from app import observability

    observability.init_app(app)  # logs + request ids, /healthz, /readyz, /metrics
    if not app.debug and not app.testing:
        logging.basicConfig(level=logging.INFO)
    return app


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
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
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


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    """Foreign keys and WAL on SQLite (the lock wait is app/deadlines.py's)."""
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()
