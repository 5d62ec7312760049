"""Shared by the fault tests (tests/faults): how fast a fault must be answered, the
database URL through a proxy, and one validation call."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from flask.testing import FlaskClient

# A fault must be answered within this (issue 13).
ANSWER_WITHIN = 2.0


def through(url: str, port: int) -> str:
    """The database URL with the proxy's address in place of the server's."""
    parts = urlsplit(url)
    auth = parts.netloc.rpartition("@")[0]
    netloc = f"{auth}@127.0.0.1:{port}" if auth else f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


def validate(client: FlaskClient, key: str) -> Any:
    return client.post(
        "/api/v1/keys/validate",
        json={"key": key, "request": {"method": "GET", "path": "/v1/faults"}},
    )
