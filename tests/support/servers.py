"""Processes and ports of a test's own: the README's server on the test's database, a private
redis-server, free loopback ports, and waiting for a condition without sleeping blind."""

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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

ROOT = Path(__file__).resolve().parents[2]
# How long a test waits for a process to start, or for background work to finish, before
# calling it a hang: a bound, not a speed check (on a loaded machine, with parallel test
# workers beside it, a server takes many seconds to import and boot its workers).
PATIENCE = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def wait_until(check: Callable[[], bool], within: float, step: float = 0.05) -> float:
    """Seconds until check() held; fails after `within`."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > within:
            raise AssertionError(f"not recovered within {within} s")
        time.sleep(step)
    return time.monotonic() - started


class PrivateRedis:
    """A redis-server on a free port of its own, which a test may pause, kill and
    start again on the same port (the shared Redis is never touched)."""

    def __init__(self, tmp: Path) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.skip("needs redis-server")
        self.exe = exe
        self.tmp = tmp
        self.port = free_port()
        self.uri = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PrivateRedis:
        import redis

        self.proc = subprocess.Popen(
            [
                *(self.exe, "--bind", "127.0.0.1", "--port", str(self.port)),
                *("--save", "", "--appendonly", "no", "--dir", str(self.tmp)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + PATIENCE
        while True:
            try:
                redis.Redis.from_url(self.uri, socket_timeout=1).ping()
                return self
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def client(self) -> Any:
        import redis

        return redis.Redis.from_url(self.uri, socket_timeout=2)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


class AppServer:
    """The README's server (`python -m app.serve`, what `make serve` runs) on 127.0.0.1,
    against the test's own database."""

    def __init__(self, app: Flask, tmp: Path, workers: int, **env: str | None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp / f"server-{self.port}.log"
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
            "RATELIMIT_KEY_PREFIX": f"server-{secrets.token_hex(8)}",
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
        self.cmd = [
            sys.executable,
            "-m",
            "app.serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(workers),
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    def launch(self) -> AppServer:
        """Start the server process without waiting for it to answer."""
        with self.log.open("wb") as out:
            # A process group of its own, as a server started from a terminal has: a test
            # can send it Ctrl-C (SIGINT to the group) without reaching pytest.
            self.proc = subprocess.Popen(
                self.cmd,
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def __enter__(self) -> AppServer:
        self.launch()
        assert self.proc is not None
        deadline = time.monotonic() + PATIENCE
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited:\n{self.log.read_text()}")
            try:
                urllib.request.urlopen(self.url + "/api/v1/openapi.json", timeout=1).close()
                return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.1)
        self.__exit__(None, None, None)
        raise RuntimeError(f"the server did not start:\n{self.log.read_text()}")

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:  # a stop serves the queue first, then each worker writes its own
                self.proc.wait(timeout=PATIENCE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def post(self, path: str, body: bytes, headers: dict[str, str] | None = None):
        """(status, headers, body) without raising on 4xx/5xx. The headers are looked up
        without regard to case, as HTTP says (the server sends them in lower case)."""
        req = urllib.request.Request(
            self.url + path,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.headers, err.read()


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (a server's workers)."""
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def established_per_process(port: int, pids: list[int]) -> dict[int, int]:
    """How many established TCP connections to local `port` each process holds (Linux:
    the sockets of /proc/net/tcp{,6} matched to each process's open files)."""
    inodes: dict[str, int] = {}
    for name in ("tcp", "tcp6"):
        for line in Path("/proc/net", name).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "01" and int(local.rsplit(":", 1)[1], 16) == port:
                inodes[f"socket:[{inode}]"] = 0
    counts = {}
    for pid in pids:
        held = 0
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                held += os.readlink(fd) in inodes
            except OSError:
                continue
        counts[pid] = held
    return counts
