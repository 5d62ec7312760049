"""A real HTTP receiver on 127.0.0.1 and an app allowed to call it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import _fresh_db, base_config
from flask import Flask

from app import create_app
from app.extensions import db


class Receiver:
    """Records every POST; answers with the next scripted status (204 when none left)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.script: list[tuple[int, dict[str, str]]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    receiver.requests.append(
                        {"path": self.path, "headers": dict(self.headers.items()), "body": body}
                    )
                    status, headers = receiver.script.pop(0) if receiver.script else (204, {})
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/keyledger"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r["body"]) for r in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def make_app(tmp_path: Path, url: str, **extra: Any) -> Flask:
    return create_app({**base_config(tmp_path, url), **extra})


@pytest.fixture
def app(migrated_db: str, tmp_path: Path) -> Iterator[Flask]:
    """The suite's app, allowed to reach the test's receiver on loopback."""
    app = make_app(tmp_path, _fresh_db(migrated_db, tmp_path), WEBHOOK_ALLOW_PRIVATE=True)
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
