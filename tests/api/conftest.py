"""Fixtures for the API tests: users and keys made with the domain services, and a
real gunicorn serving the same database for the multi-worker tests."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select, update

from app import accounts, create_app
from app.extensions import db
from app.keys import lifecycle
from app.models import ApiKey, User
from app.models._types import utcnow

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery staple"
ALL_SCOPES = ("keys:read", "keys:write", "usage:read")


@dataclass
class Key:
    plaintext: str
    public_id: str
    id: int
    owner_id: int

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.plaintext}"}


class Keys:
    """Makes users and keys through app/accounts and app/keys, as the portal does."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def user(self, email: str = "svc@example.com", tier: str = "basic") -> int:
        with self.app.app_context():
            found = accounts.find_user(db.session, email)
            if found is not None:
                return found.id
            return accounts.create_user(
                db.session,
                self.app.extensions["keyledger.passwords"],
                email=email,
                password=PASSWORD,
                tier=tier,
            ).id

    def key(
        self,
        *,
        email: str = "svc@example.com",
        tier: str = "basic",
        scopes: tuple[str, ...] = ALL_SCOPES,
        days: int = 30,
        name: str = "svc",
    ) -> Key:
        user_id = self.user(email, tier)
        with self.app.app_context():
            owner = db.session.get(User, user_id)
            new = lifecycle.create_key(
                db.session,
                self.app.extensions["keyledger.key_policy"],
                owner,
                name=name,
                scopes=scopes,
                lifetime_days=days,
            )
            return Key(new.plaintext, new.key.public_id, new.key.id, user_id)

    def set_tier(self, user_id: int, tier: str) -> None:
        with self.app.app_context():
            accounts.set_tier(db.session, db.session.get(User, user_id), tier, actor="cli")
            db.session.commit()

    def revoke(self, key: Key) -> None:
        with self.app.app_context():
            row = db.session.get(ApiKey, key.id)
            lifecycle.revoke_key(db.session, row, actor=row.owner, actor_ip=None)

    def expire(self, key: Key) -> None:
        with self.app.app_context():
            db.session.execute(
                update(ApiKey)
                .where(ApiKey.id == key.id)
                .values(expires_at=utcnow() - timedelta(seconds=1))
            )
            db.session.commit()

    def row(self, public_id: str) -> ApiKey | None:
        with self.app.app_context():
            row = db.session.scalar(select(ApiKey).where(ApiKey.public_id == public_id))
            if row is not None:
                db.session.expunge(row)
            return row


@pytest.fixture
def keys(app: Flask) -> Keys:
    return Keys(app)


# What a second app on the same database needs from the test's own app.
_SHARED = (
    "TESTING",
    "SQLALCHEMY_DATABASE_URI",
    "INSTANCE_PATH",
    "SECRET_KEY",
    "KEY_PEPPER",
    "AUDIT_SIGNING_KEY",
    "ARGON2_TIME_COST",
    "ARGON2_MEMORY_COST",
    "ARGON2_PARALLELISM",
    "RATELIMIT_STORAGE_URI",
    "RATELIMIT_KEY_PREFIX",
)


@pytest.fixture
def make_app(app: Flask) -> Iterator[Any]:
    """make_app(**overrides): another app on the test's database with other settings.

    Flask-Limiter's Limiter is one object per process and takes the storage of the app
    it was last bound to, so make the variant after any setup done through `app`.
    """
    made: list[Flask] = []

    def make(**overrides: Any) -> Flask:
        variant = create_app({**{k: app.config[k] for k in _SHARED}, **overrides})
        made.append(variant)
        return variant

    yield make
    for variant in made:
        with variant.app_context():
            db.session.remove()
            db.engine.dispose()


def forged_key(prefix: str = "klk") -> str:
    """A well-formed key (right shape and checksum) that was never issued."""
    from app.keys import format as keyformat

    return keyformat.assemble(prefix, keyformat.new_public_id(), keyformat.new_secret())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[str]:
    """A Redis server of the test's own: pausing it stalls no other test's Redis."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("needs redis-server")
    import redis

    port = free_port()
    proc = subprocess.Popen(
        [exe, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    uri = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(uri).ping()
                break
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield uri
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class Gunicorn:
    """`gunicorn app:create_app()` on 127.0.0.1 against the test's own database."""

    def __init__(self, app: Flask, tmp: Path, workers: int, **env: str | None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp / f"gunicorn-{self.port}.log"
        conf = app.config
        self.env = {
            **os.environ,
            "KEYLEDGER_ENV": "development",
            "KEYLEDGER_INSTANCE": conf["INSTANCE_PATH"],
            "DATABASE_URL": conf["SQLALCHEMY_DATABASE_URI"],
            "SECRET_KEY": conf["SECRET_KEY"],
            "KEY_PEPPER": conf["KEY_PEPPER"],
            "AUDIT_SIGNING_KEY": conf["AUDIT_SIGNING_KEY"],
            "RATELIMIT_STORAGE_URI": conf["RATELIMIT_STORAGE_URI"],
            "RATELIMIT_KEY_PREFIX": f"gunicorn-{secrets.token_hex(8)}",
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        if workers > 1 and "RATELIMIT_ALLOW_PER_WORKER" not in env:
            # Several workers on the suite's memory:// limits (SQLite runs): tests that
            # need limits shared across workers use Redis and say so (needs_redis).
            self.env["RATELIMIT_ALLOW_PER_WORKER"] = "1"
        # None: the variable is not set at all (an empty value is not the same thing to
        # every library: prometheus-client switches modes on the name alone).
        self.env = {k: v for k, v in self.env.items() if v is not None}
        # The README's server: `make serve` names the config file (-c), which gunicorn
        # then reads at another moment than its implicit ./gunicorn.conf.py.
        self.cmd = [
            str(Path(sys.executable).parent / "gunicorn"),
            "-c",
            str(ROOT / "gunicorn.conf.py"),
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(workers),
            "--log-level",
            "info",
            "app:create_app()",
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Gunicorn:
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                self.cmd, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 60  # a busy 2-core machine boots workers slowly
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited:\n{self.log.read_text()}")
            try:
                urllib.request.urlopen(self.url + "/api/v1/openapi.json", timeout=1).close()
                return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.1)
        self.__exit__(None, None, None)
        raise RuntimeError(f"gunicorn did not start:\n{self.log.read_text()}")

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def post(self, path: str, body: bytes, headers: dict[str, str] | None = None):
        """(status, headers, body) without raising on 4xx/5xx."""
        req = urllib.request.Request(
            self.url + path,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers), err.read()


@pytest.fixture
def gunicorn(app: Flask, tmp_path: Path) -> Iterator[Any]:
    """Start servers with gunicorn(workers=N, **env); all are stopped after the test."""
    started: list[Gunicorn] = []

    def start(workers: int = 2, **env: str | None) -> Gunicorn:
        server = Gunicorn(app, tmp_path, workers, **env).__enter__()
        started.append(server)
        return server

    yield start
    for server in started:
        server.__exit__(None, None, None)
