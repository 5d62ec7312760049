"""The API keeps its caches per app (app.extensions, made by app.api.init_app), and each
app has its own Flask-Limiter Limiter (app/limiter.py), with the API's filter once."""

from __future__ import annotations

from pathlib import Path

from flask import Flask
from support.db import base_config
from support.keys import Keys

from app import create_app
from app.api.state import EXTENSION
from app.limiter import limiter_of

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


def test_each_app_has_its_own_limiter_with_the_api_filter_once(app: Flask, tmp_path: Path) -> None:
    from app.api import _counted_by_charge

    uri = app.config["SQLALCHEMY_DATABASE_URI"]
    others = [create_app(base_config(tmp_path / str(i), uri)) for i in range(2)]
    limiters = [limiter_of(one) for one in (app, *others)]
    assert len({id(one) for one in limiters}) == 3
    assert len({id(one.storage) for one in limiters}) == 3
    assert all(one._request_filters == [_counted_by_charge] for one in limiters)


def test_a_second_app_counts_its_login_limit_in_its_own_storage(app: Flask, tmp_path: Path) -> None:
    """One Limiter for the process counted every app's decorated limits in the storage of
    the app made last, under the key prefix of the app made first."""
    uri = app.config["SQLALCHEMY_DATABASE_URI"]
    config = {"LOGIN_RATE_LIMIT": "2/minute", "WTF_CSRF_ENABLED": False}
    first, second = (
        create_app({**base_config(tmp_path / name, uri), **config}) for name in ("1", "2")
    )
    spent = [first.test_client().post("/register").status_code for _ in range(3)]
    assert spent == [400, 400, 429]  # an empty form: refused, but counted first
    assert second.test_client().post("/register").status_code == 400


def test_storage_options_stay_with_their_app(app: Flask, tmp_path: Path) -> None:
    """The options of one app's storage (a Sentinel's, a client name) reached every app
    made after it in the process: the Redis fault tests broke after the Sentinel test."""
    uri = app.config["SQLALCHEMY_DATABASE_URI"]
    nowhere = "redis://127.0.0.1:9/0"  # never connected to: the pools are only built

    def pool_kwargs(name: str, **options: object) -> dict[str, object]:
        config = {**base_config(tmp_path / name, uri), "RATELIMIT_STORAGE_URI": nowhere}
        if options:
            config["RATELIMIT_STORAGE_OPTIONS"] = options
        storage = limiter_of(create_app(config)).storage
        return storage.storage.connection_pool.connection_kwargs  # type: ignore[attr-defined]

    assert pool_kwargs("named", client_name="named")["client_name"] == "named"
    assert "client_name" not in pool_kwargs("plain")
