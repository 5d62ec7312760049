"""Inputs the fuzz tests (tests/fuzz, -m fuzz) found answering 500, kept as plain tests."""

from __future__ import annotations

from flask import Flask
from support.rows import snapshot
from support.web import Portal


def test_a_lifetime_of_hundreds_of_digits_is_refused_not_a_500(app: Flask, user: Portal) -> None:
    before = snapshot(app)
    resp = user.submit(
        "/keys/new", {"name": "x", "scopes": ["keys:read"], "lifetime_days": "9" * 400}
    )
    assert resp.status_code in (200, 400)
    assert "Choose between 1 and" in resp.get_data(as_text=True)
    assert snapshot(app) == before
