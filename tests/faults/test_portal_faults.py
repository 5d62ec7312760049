"""Portal requests in flight when PostgreSQL stalls, refuses, or commits without
answering (issue 22), through the test's own proxy: the fault starts inside the
request, at a chosen statement, so the view's queries, the commit and the session
write (save_session) each meet it. Every answer is a 503 (never a 500) or, for a key
whose creation committed, the page with its secret; a key whose secret was not shown
does not stay live."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event, select
from support.proxy import Proxy
from support.servers import timed, wait_until
from support.web import PASSWORD, Portal, csrf_token, hidden

from app.extensions import db
from app.models import ApiKey

pytestmark = pytest.mark.faults


@contextmanager
def _once(target: Any, name: str, action: Callable[[], None]) -> Iterator[None]:
    """Run `action` the first time SQLAlchemy fires `name` on `target`, then no more."""
    fired: list[bool] = []

    def fire(*args: Any, **kw: Any) -> None:
        if not fired:
            fired.append(True)
            action()

    event.listen(target, name, fire)
    try:
        yield
    finally:
        event.remove(target, name, fire)
    assert fired, f"{name} never fired"


def _engine(app: Flask) -> Any:
    with app.app_context():
        return db.engine


def _keys(app: Flask) -> dict[str, bool]:
    """Every key's public id: live (not revoked) or not."""
    with app.app_context():
        rows = db.session.execute(select(ApiKey.public_id, ApiKey.revoked_at)).all()
        db.session.remove()
    return {public_id: revoked is None for public_id, revoked in rows}


def _new_key_form(portal: Portal) -> dict[str, Any]:
    html = portal.client.get("/keys/new").get_data(as_text=True)
    return {
        "csrf_token": csrf_token(html),
        "form_token": hidden(html, "form_token"),
        "name": "in flight",
        "scopes": ["keys:read"],
        "lifetime_days": 30,
    }


def _recover(portal: Portal, proxy: Proxy) -> None:
    proxy.forward()
    wait_until(lambda: portal.client.get("/keys").status_code == 200, within=10)


@pytest.fixture
def portal(proxied_app: Flask) -> Portal:
    portal = Portal(proxied_app.test_client())
    assert portal.register("inflight@example.com").status_code == 302
    return portal


@pytest.mark.parametrize("fault", ["blackhole", "refuse"])
def test_portal_pages_in_flight_answer_503(
    proxied_app: Flask, pg_proxy: Proxy, portal: Portal, fault: str
) -> None:
    """The fault starts after the request's first statement (its session's lookup): the
    view's queries fail, then save_session writes the session on a dead database."""
    _, key = portal.create_key("first")
    assert key
    public_id = key.split(".")[1]
    engine = _engine(proxied_app)
    for method, path in (("GET", "/keys"), ("GET", f"/keys/{public_id}"), ("POST", "/keys/new")):
        data = _new_key_form(portal) if method == "POST" else None
        before = _keys(proxied_app)
        with _once(engine, "after_cursor_execute", getattr(pg_proxy, fault)):
            resp, seconds = timed(partial(portal.client.open, path, method=method, data=data))
        page = resp.get_data(as_text=True)
        print(f"  {fault} {method} {path}: {resp.status_code} in {seconds:.2f} s")
        assert resp.status_code == 503, (path, resp.status_code, page[:300])
        assert "Temporarily unavailable" in page
        _recover(portal, pg_proxy)
        assert _keys(proxied_app) == before  # nothing was created


@pytest.mark.parametrize("fault", ["blackhole", "refuse"])
def test_a_created_key_whose_session_write_fails_is_shown(
    proxied_app: Flask, pg_proxy: Proxy, portal: Portal, fault: str
) -> None:
    """The fault starts just after the key's commit: the page with its secret must still
    reach the user (save_session's own write fails after it), never a 500 that hides
    a live key's only showing."""
    data = _new_key_form(portal)
    with _once(db.session, "after_commit", getattr(pg_proxy, fault)):
        resp, seconds = timed(lambda: portal.client.post("/keys/new", data=data))
    page = resp.get_data(as_text=True)
    print(f"  {fault} after commit: {resp.status_code} in {seconds:.2f} s")
    _recover(portal, pg_proxy)
    live = {k for k, alive in _keys(proxied_app).items() if alive}
    shown = re.search(r'id="new-key"[^>]*value="[^".]+\.([^".]+)\.', page)
    assert resp.status_code == 200, page[:300]
    assert shown and shown.group(1) in live


def test_a_key_whose_commit_went_unanswered_does_not_stay_live(
    proxied_app: Flask, pg_proxy: Proxy, portal: Portal
) -> None:
    """The COMMIT reaches PostgreSQL, which carries it out, and its answer is lost: the
    user gets a 503 and never sees the secret, so the key must not stay live."""
    data = _new_key_form(portal)
    before = _keys(proxied_app)
    with _once(_engine(proxied_app), "commit", pg_proxy.mute):
        resp, seconds = timed(lambda: portal.client.post("/keys/new", data=data))
    print(f"  commit unanswered: {resp.status_code} in {seconds:.2f} s")
    assert resp.status_code == 503, resp.get_data(as_text=True)[:300]
    _recover(portal, pg_proxy)
    made = set(_keys(proxied_app)) - set(before)
    assert made, "the proxy let the COMMIT through: the key exists"
    wait_until(lambda: not any(_keys(proxied_app)[k] for k in made), within=10)


def _statements(engine: Any, call: Callable[[], Any]) -> int:
    seen: list[str] = []

    def count(*args: Any) -> None:
        seen.append(args[2])

    event.listen(engine, "after_cursor_execute", count)
    try:
        call()
    finally:
        event.remove(engine, "after_cursor_execute", count)
    return len(seen)


def test_a_stall_after_the_views_last_statement_answers_503(
    proxied_app: Flask, pg_proxy: Proxy, portal: Portal
) -> None:
    """The view has read all it needs with its transaction still open, then the database
    stalls: the rollback that save_session does before writing the session meets it
    (issue 22: `rollback()` raised there, a 500). The page was built: it is served, or a
    503; never a 500."""
    engine = _engine(proxied_app)
    portal.client.get("/keys")  # the session's "last seen" is written: not again soon
    n = _statements(engine, lambda: portal.client.get("/keys"))  # the view's, all of them
    assert n >= 2
    fired: list[int] = []

    def at_last(*args: Any) -> None:
        fired.append(1)
        if len(fired) == n:
            pg_proxy.blackhole()

    event.listen(engine, "after_cursor_execute", at_last)
    try:
        resp, seconds = timed(lambda: portal.client.get("/keys"))
    finally:
        event.remove(engine, "after_cursor_execute", at_last)
    print(f"  blackhole after the view's last statement: {resp.status_code} in {seconds:.2f} s")
    assert len(fired) >= n
    assert resp.status_code in (200, 503), resp.get_data(as_text=True)[:300]
    _recover(portal, pg_proxy)


def test_a_login_whose_session_record_meets_a_stall_answers_503(
    proxied_app: Flask, pg_proxy: Proxy, portal: Portal
) -> None:
    """The password was right, and the stall comes as the session record is written:
    no record, no login; a 503 page, not a 500 nor a redirect into a logged-out portal."""
    client = proxied_app.test_client()
    html = client.get("/login").get_data(as_text=True)
    data = {"email": "inflight@example.com", "password": PASSWORD, "csrf_token": csrf_token(html)}

    def stall_the_session_record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO USER_SESSION"):
            pg_proxy.blackhole()

    engine = _engine(proxied_app)
    event.listen(engine, "before_cursor_execute", stall_the_session_record)
    try:
        resp, seconds = timed(lambda: client.post("/login", data=data))
    finally:
        event.remove(engine, "before_cursor_execute", stall_the_session_record)
    page = resp.get_data(as_text=True)
    print(f"  blackhole at the login's session record: {resp.status_code} in {seconds:.2f} s")
    assert resp.status_code == 503, page[:300]
    assert "Temporarily unavailable" in page and "Location" not in resp.headers
    _recover(portal, pg_proxy)
    assert client.get("/keys").status_code == 302  # not signed in
