"""`make serve` is gunicorn (with gunicorn.conf.py) on the embedded defaults, and two
instances on one machine, each with its own port and instance folder, run side by side
with a control socket each."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from support.servers import PATIENCE, free_port

# Starts processes of its own: on the one xdist worker that runs such tests.
pytestmark = [pytest.mark.faults, pytest.mark.xdist_group("servers")]
ROOT = Path(__file__).resolve().parents[2]


def _serve(instance: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "RATELIMIT_STORAGE_URI")
    }
    env.update(KEYLEDGER_INSTANCE=str(instance), PYTHONUNBUFFERED="1")
    with log.open("wb") as out:
        # -o: the venv is the test's own; make must not reinstall it.
        return subprocess.Popen(
            ["make", "-o", ".venv/.installed", "serve", f"PORT={port}"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as a terminal's job would be
        )


def _wait_for(url: str, proc: subprocess.Popen[bytes], log: Path) -> dict[str, str]:
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return dict(resp.headers)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    raise AssertionError(f"make serve did not answer:\n{log.read_text()}")


def _control_socket(log: Path) -> Path:
    deadline = time.monotonic() + PATIENCE  # the master opens it in a thread of its own
    while time.monotonic() < deadline:
        m = re.search(r"Control socket listening at ([^\s\"]+)", log.read_text())
        if m:
            return Path(m.group(1))
        time.sleep(0.1)
    raise AssertionError(log.read_text())


def test_make_serve_is_gunicorn_and_two_instances_do_not_collide(tmp_path: Path) -> None:
    # Instance a has a short path: its socket goes in its folder. Instance b's path is
    # too long for a Unix socket there, so its socket gets a short name of its own.
    short = Path(tempfile.mkdtemp(prefix="kl-"))
    instances = {"a": short / "instance-a", "b": tmp_path / ("long-" * 12) / "instance-b"}
    servers = []
    sockets: list[Path] = []
    try:
        for name, instance in instances.items():
            port = free_port()
            log = tmp_path / f"serve-{name}.log"
            proc = _serve(instance, port, log)
            servers.append((proc, instance, port, log))
        for proc, instance, port, log in servers:
            headers = _wait_for(f"http://127.0.0.1:{port}/login", proc, log)
            assert "gunicorn" in headers.get("Server", "").lower(), headers
            ctl = _control_socket(log)
            if instance.parent == short:
                assert ctl == instance / f"gunicorn-127.0.0.1_{port}.ctl"
            assert stat.S_ISSOCK(ctl.stat().st_mode), log.read_text()
            sockets.append(ctl)
            with socket.socket(socket.AF_UNIX) as s:  # it answers: it is this instance's
                s.connect(str(ctl))
        assert len(set(sockets)) == 2
    finally:
        for proc, _, _, _ in servers:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal
        for proc, _, _, _ in servers:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    for _, instance, _, log in servers:
        output = log.read_text()
        assert "Starting gunicorn" in output
        assert "Shutting down: Master" in output
        assert (instance / "keyledger.db").exists()  # the embedded SQLite default
    assert not any(ctl.exists() for ctl in sockets)  # gunicorn removed its own
    shutil.rmtree(short)
