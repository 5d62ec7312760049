"""Slow clients: connections that trickle a request a byte at a time, the way a client
on a bad link (or an attacker) would, to check that they hold no worker.

Half send complete headers with `Content-Length: 100` and then trickle the body; half
trickle the headers themselves. Used by tests/faults/test_slow_clients.py and by
scripts/bench_validate.py --slow-clients (the server comparison in docs/decisions.md).
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any


class Trickle:
    """`n` connections to host:port trickling one byte every `every` seconds, until
    stop(). A connection the server closes is counted in `closed` and not reopened."""

    def __init__(
        self, host: str, port: int, n: int = 60, every: float = 0.5, form: str | None = None
    ) -> None:
        """Half the connections trickle a validation's body, or a form's body to the
        portal path `form`; the other half trickle their headers."""
        self.host, self.port, self.n, self.every, self.form = host, port, n, every, form
        self.socks: list[socket.socket] = []
        self.rests: list[bytes] = []
        self.closed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Trickle:
        for i in range(self.n):
            s = socket.create_connection((self.host, self.port), timeout=5)
            if i % 2 and self.form:
                head = (
                    f"POST {self.form} HTTP/1.1\r\n"
                    f"Host: {self.host}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                    "Content-Length: 100\r\n\r\n"
                ).encode()
                s.sendall(head + b"e")  # then the other 99 bytes, one by one
                rest = b"mail=" + b"x" * 94
            elif i % 2:
                head = (
                    "POST /api/v1/keys/validate HTTP/1.1\r\n"
                    f"Host: {self.host}\r\nContent-Type: application/json\r\n"
                    "Content-Length: 100\r\n\r\n"
                ).encode()
                s.sendall(head + b"{")  # then the other 99 bytes, one by one
                rest = b'"key": "' + b"x" * 90
            else:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: ")
                rest = b"x" * 4000  # a header value that never ends
            self.socks.append(s)
            self.rests.append(rest)
        self._thread.start()
        return self

    def _run(self) -> None:
        step = 0
        while not self._stop.wait(self.every):
            for i, s in enumerate(self.socks):
                if s.fileno() < 0 or step >= len(self.rests[i]):
                    continue
                try:
                    s.send(self.rests[i][step : step + 1])
                except OSError:
                    self.closed += 1
                    s.close()
            step += 1

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        for s in self.socks:
            s.close()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def timed_request(host: str, port: int, raw: bytes, timeout: float = 35.0) -> tuple[int, float]:
    """(status, seconds) of one request sent whole on a fresh connection; status 0 if the
    server closed or did not answer within `timeout`."""
    started = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(raw)
            data = b""
            while b"\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return 0, time.monotonic() - started
    line = data.split(b"\r\n", 1)[0].split()
    status = int(line[1]) if len(line) > 1 and line[1].isdigit() else 0
    return status, time.monotonic() - started


def healthz(host: str) -> bytes:
    return page(host, "/healthz")


def page(host: str, path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()


def validate(host: str, key: str) -> bytes:
    body = ('{"key": "' + key + '"}').encode()
    head = (
        "POST /api/v1/keys/validate HTTP/1.1\r\n"
        f"Host: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body
