"""Fixtures: a real database per test (SQLite file, or PostgreSQL when DATABASE_URL
names one), the schema built by the real migrations, CSRF left on."""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_migrate import upgrade
from sqlalchemy import create_engine, text

from app import create_app
from app.extensions import db

PG_URL = os.environ.get("DATABASE_URL", "")
USE_PG = PG_URL.startswith("postgresql")
PASSWORD = "correct horse battery staple"
CSRF_RE = re.compile(
    r'name="csrf_token" type="hidden" value="([^"]+)"|'
    r'name="csrf_token" value="([^"]+)"'
)


def base_config(tmp: Path, url: str) -> dict[str, Any]:
    return {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": url,
        "INSTANCE_PATH": str(tmp / "instance"),
        "SECRET_KEY": "test-secret-key",
        "KEY_PEPPER": "test-pepper",
        # Cheap argon2 parameters: the tests exercise behaviour, not cost.
        "ARGON2_TIME_COST": 1,
        "ARGON2_MEMORY_COST": 8,
        "ARGON2_PARALLELISM": 1,
        "RATELIMIT_STORAGE_URI": os.environ.get("RATELIMIT_STORAGE_URI", "memory://"),
        "RATELIMIT_KEY_PREFIX": f"test-{uuid.uuid4().hex}",
        # Direct database edits in tests must show at once; the key cache's own tests
        # (tests/api) and the gunicorn tests run with the real default (0.5 s).
        "KEY_CACHE_TTL": 0,
    }


# Markers of the long tests that CI runs in steps of their own: left out of a run
# unless its -m expression names them (`pytest -m slow`, `pytest -m fuzz`).
OWN_STEP_MARKERS = ("faults", "slow", "fuzz")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wanted = config.getoption("markexpr") or ""
    left_out = [m for m in OWN_STEP_MARKERS if m not in wanted]
    if not left_out:
        return
    kept, dropped = [], []
    for item in items:
        (dropped if any(item.get_closest_marker(m) for m in left_out) else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Run the migrations once; tests get a copy (SQLite) or a truncated schema (PG)."""
    tmp = tmp_path_factory.mktemp("template")
    if USE_PG:
        engine = create_engine(PG_URL)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()
        url = PG_URL
    else:
        url = f"sqlite:///{tmp / 'template.db'}"
    app = create_app(base_config(tmp, url))
    with app.app_context():
        upgrade()
        db.engine.dispose()
    return url


def _fresh_db(template_url: str, tmp: Path) -> str:
    if not USE_PG:
        target = tmp / "keyledger.db"
        shutil.copyfile(template_url.removeprefix("sqlite:///"), target)
        return f"sqlite:///{target}"
    engine = create_engine(template_url)
    with engine.begin() as conn:
        tables = (
            conn.execute(
                text(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                    "AND tablename <> 'alembic_version'"
                )
            )
            .scalars()
            .all()
        )
        if tables:
            names = ", ".join(f'"{t}"' for t in tables)
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return template_url


@pytest.fixture(autouse=True)
def _limiter_prefix_per_app() -> None:
    """Flask-Limiter's shared `limiter` keeps the first app's RATELIMIT_KEY_PREFIX for
    good, so on Redis every test would spend one budget; forget it before each test."""
    from app.extensions import limiter

    limiter._key_prefix = ""


@pytest.fixture
def app(migrated_db: str, tmp_path: Path) -> Iterator[Flask]:
    app = create_app(base_config(tmp_path, _fresh_db(migrated_db, tmp_path)))
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def fresh_app(migrated_db: str, tmp_path: Path) -> Iterator[Callable[[], Flask]]:
    """Make apps one after another, each on an empty database (on PostgreSQL the same
    database emptied again: finish with one app before making the next)."""
    made: list[Flask] = []

    def make() -> Flask:
        for earlier in made:
            with earlier.app_context():
                db.session.remove()
                db.engine.dispose()
        tmp = tmp_path / f"app{len(made)}"
        tmp.mkdir()
        made.append(create_app(base_config(tmp, _fresh_db(migrated_db, tmp))))
        return made[-1]

    yield make
    for earlier in made:
        with earlier.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask):
    return app.test_cli_runner()


def csrf_token(html: str) -> str:
    m = CSRF_RE.search(html)
    assert m, "page has no CSRF token"
    return m.group(1) or m.group(2)


def hidden(html: str, name: str) -> str | None:
    m = re.search(rf'id="{name}" name="{name}" type="hidden" value="([^"]*)"', html)
    return m.group(1) if m else None


class Portal:
    """A person in a browser: fetches the form, then posts it with its tokens."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client

    def submit(self, form_url: str, data: dict[str, Any], action: str | None = None, **kw: Any):
        page = self.client.get(form_url)
        html = page.get_data(as_text=True)
        payload = {"csrf_token": csrf_token(html), **data}
        token = hidden(html, "form_token")
        if token is not None:
            payload.setdefault("form_token", token)
        return self.client.post(action or form_url, data=payload, **kw)

    def register(self, email: str, password: str = PASSWORD):
        return self.submit("/register", {"email": email, "password": password, "confirm": password})

    def login(self, email: str, password: str = PASSWORD):
        return self.submit("/login", {"email": email, "password": password})

    def logout(self):
        return self.submit("/keys", {}, action="/logout")

    def create_key(
        self,
        name: str = "ci",
        scopes: tuple[str, ...] = ("keys:read",),
        custom: str = "",
        days: int = 30,
    ) -> tuple[Any, str | None]:
        resp = self.submit(
            "/keys/new",
            {"name": name, "scopes": list(scopes), "custom_scopes": custom, "lifetime_days": days},
        )
        m = re.search(r'id="new-key"[^>]*value="([^"]+)"', resp.get_data(as_text=True))
        return resp, (m.group(1) if m else None)


@pytest.fixture
def portal(client: FlaskClient) -> Portal:
    return Portal(client)


@pytest.fixture
def user(portal: Portal) -> Portal:
    """A registered, logged-in basic-tier user."""
    resp = portal.register("alice@example.com")
    assert resp.status_code == 302, resp.get_data(as_text=True)
    return portal


# --- helpers shared by the issue-2 tests (added by helper A) ---------------------------

OTHER_PASSWORD = "another long passphrase here"


def count_rows(app: Flask, table: str) -> int:
    """Rows in a table, read with plain SQL so the check does not trust the ORM."""
    with app.app_context():
        return db.session.execute(text(f'SELECT COUNT(*) FROM "{table}"')).scalar_one()


def snapshot(app: Flask) -> dict[str, int]:
    """Row counts a 'nothing changed' assertion compares before and after."""
    return {t: count_rows(app, t) for t in ("user", "api_key", "audit_event")}


def audit_events(app: Flask, action: str | None = None, target: str | None = None) -> list:
    """Audit events by action and/or target (never by position: sealing may renumber)."""
    from sqlalchemy import select

    from app.models import AuditEvent
    from app.usage import recorder

    # Validation events ride the usage recorder's batch (manual under TESTING): write them.
    recorder(app).flush()
    with app.app_context():
        query = select(AuditEvent)
        if action is not None:
            query = query.where(AuditEvent.action == action)
        if target is not None:
            query = query.where(AuditEvent.target == target)
        rows = db.session.scalars(query).all()
        db.session.expunge_all()
        return rows


def flush_usage(app: Flask) -> None:
    """Write what the batched usage recorder holds (last use, validation events)."""
    from app.usage import recorder

    recorder(app).flush()


def key_row(app: Flask, public_id: str):
    """The stored key, detached, for checks of what the database holds."""
    from sqlalchemy import select

    from app.models import ApiKey

    flush_usage(app)
    with app.app_context():
        key = db.session.scalar(select(ApiKey).where(ApiKey.public_id == public_id))
        if key is not None:
            db.session.expunge(key)
        return key


def public_id_of(plaintext: str) -> str:
    return plaintext.split(".")[1]


@pytest.fixture
def other(app: Flask) -> Portal:
    """A second registered, logged-in user (bob) in a browser of their own."""
    bob = Portal(app.test_client())
    resp = bob.register("bob@example.com", OTHER_PASSWORD)
    assert resp.status_code == 302, resp.get_data(as_text=True)
    return bob


@pytest.fixture
def admin(app: Flask) -> Portal:
    """An admin made the documented way (`flask users create --admin`), then logged in."""
    result = app.test_cli_runner().invoke(
        args=["users", "create", "root@example.com", "--admin", "--tier", "enterprise"],
        input=PASSWORD + "\n",
    )
    assert result.exit_code == 0, result.output
    root = Portal(app.test_client())
    resp = root.login("root@example.com")
    assert resp.status_code == 302, resp.get_data(as_text=True)
    return root
