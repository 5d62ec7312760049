"""The API keeps its caches per app (app.extensions, made by app.api.init_app), and
Flask-Limiter's filter for it is added once however many apps are made."""

from __future__ import annotations

from pathlib import Path

from flask import Flask
from support.db import base_config
from support.keys import Keys

from app import create_app
from app.api.state import EXTENSION
from app.extensions import limiter

URL = "/api/v1/keys/validate"


def test_each_app_has_its_own_api_caches(app: Flask, keys: Keys, tmp_path: Path) -> None:
    key = keys.key()
    assert app.test_client().post(URL, json={"key": key.plaintext}).status_code == 200
    state = app.extensions[EXTENSION]
    assert len(state.heads) == 1 and len(state.seen) == 1

    other = create_app(base_config(tmp_path / "other", app.config["SQLALCHEMY_DATABASE_URI"]))
    fresh = other.extensions[EXTENSION]
    assert fresh is not state and not fresh.heads and not fresh.seen
    # The other app audits its own first validation of the minute: nothing is shared.
    assert other.test_client().post(URL, json={"key": key.plaintext}).status_code == 200
    assert len(fresh.seen) == 1 and len(state.seen) == 1


def test_the_limiter_filter_is_added_once(app: Flask, tmp_path: Path) -> None:
    from app.api import _counted_by_charge

    for i in range(3):
        create_app(base_config(tmp_path / str(i), app.config["SQLALCHEMY_DATABASE_URI"]))
    assert limiter._request_filters.count(_counted_by_charge) == 1
