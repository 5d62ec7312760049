"""A real Keyledger under the README's server (app/serve.py) on 127.0.0.1, on its own
SQLite file, for browsers.

Shared by the e2e tests and scripts/screenshots.py, so both drive the same stack a
person would: migrations applied by the CLI, an admin made by `flask users create`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PASSWORD = "correct horse battery staple"
ADMIN_EMAIL = "admin@example.com"


# A loaded CI machine (two cores, the whole suite beside) can take most of a minute to
# import the app in a fresh worker.
BOOT_SECONDS = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """Migrate a fresh database, create an admin, serve as `make serve` does; stop on exit.

    The server always uses its own SQLite file and memory:// limits, even when the
    suite runs on PostgreSQL (DATABASE_URL): it must not share or truncate the
    database the other tests use, and what the browser checks is the page, which is
    the same on either database.
    """

    def __init__(self, extra_env: dict[str, str] | None = None) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="keyledger-e2e-")
        tmp = Path(self._tmp.name)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp / "server.log"
        self.env = {
            **os.environ,
            "FLASK_APP": "app",
            "KEYLEDGER_ENV": "development",
            "KEYLEDGER_INSTANCE": str(tmp / "instance"),
            "DATABASE_URL": f"sqlite:///{tmp / 'e2e.db'}",
            "RATELIMIT_STORAGE_URI": "memory://",
            "SECRET_KEY": "e2e-secret-key",
            "KEY_PEPPER": "e2e-pepper",
            # Cheap argon2: the browser tests exercise pages, not hashing cost.
            "ARGON2_TIME_COST": "1",
            "ARGON2_MEMORY_COST": "8",
            "ARGON2_PARALLELISM": "1",
            # One server for the whole browser run: its tests log the same admin in more
            # often than a person's budget per account allows (10 per 15 minutes).
            "LOGIN_RATE_LIMIT": "1000/minute",
            "LOGIN_ACCOUNT_LIMIT": "1000 per 15 minutes",
            "PYTHONUNBUFFERED": "1",
            **(extra_env or {}),
        }
        self._proc: subprocess.Popen[bytes] | None = None

    def flask(self, *args: str, stdin: str | None = None) -> str:
        """Run `flask --app app ...` against this server's database; return stdout."""
        done = subprocess.run(
            [str(BIN / "flask"), "--app", "app", *args],
            cwd=ROOT,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode != 0:
            raise RuntimeError(f"flask {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def migrate(self) -> None:
        """`flask db upgrade`, run in this process: the CLI costs seconds of imports."""
        from flask_migrate import upgrade

        from app import create_app
        from app.extensions import db

        app = create_app(
            {
                "SQLALCHEMY_DATABASE_URI": self.env["DATABASE_URL"],
                "INSTANCE_PATH": self.env["KEYLEDGER_INSTANCE"],
                "SECRET_KEY": self.env["SECRET_KEY"],
                "KEY_PEPPER": self.env["KEY_PEPPER"],
                "RATELIMIT_STORAGE_URI": "memory://",
            }
        )
        with app.app_context():
            upgrade()
            db.engine.dispose()

    def start(self) -> LiveServer:
        self.migrate()
        # The first admin comes from the real CLI, as the README tells an operator;
        # it runs while the server boots.
        admin = subprocess.Popen(
            [
                str(BIN / "flask"),
                "--app",
                "app",
                "users",
                "create",
                ADMIN_EMAIL,
                "--admin",
                "--tier",
                "enterprise",
            ],
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._boot()
        out, _ = admin.communicate(PASSWORD + "\n", timeout=60)
        if admin.returncode != 0:
            self.stop()
            raise RuntimeError(f"flask users create failed:\n{out}")
        return self

    def _boot(self) -> None:
        log = self.log_path.open("wb")
        self._proc = subprocess.Popen(
            [
                str(BIN / "python"),
                "-m",
                "app.serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "1",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + BOOT_SECONDS
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"the server exited:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/login", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the server did not answer within {BOOT_SECONDS} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            # SIGINT: as Ctrl-C (each worker still writes its queues as it exits).
            self._proc.send_signal(signal.SIGINT)
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def close(self) -> None:
        self.stop()
        self._tmp.cleanup()

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
