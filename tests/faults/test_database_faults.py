"""PostgreSQL black-holed and refusing, through the test's own proxy: every route answers
within 2 s (503 where it needs the database, with the usual headers and no database
access on the error page), what was queued for usage and audit is written once the
database is back, and the app recovers without a restart."""

from __future__ import annotations

import pytest
from flask import Flask
from support.faults import ANSWER_WITHIN, validate
from support.proxy import Proxy
from support.rows import audit_events, count_rows
from support.servers import timed, wait_until
from support.web import PASSWORD, Portal, csrf_token

from app.usage import recorder

pytestmark = pytest.mark.faults


def _setup(app: Flask) -> tuple[Portal, str]:
    portal = Portal(app.test_client())
    assert portal.register("ops@example.com").status_code == 302
    resp, key = portal.create_key("faults", days=30)
    assert key, resp.get_data(as_text=True)
    return portal, key


def _routes(portal: Portal, key: str, tokens: dict[str, str]) -> dict[str, tuple]:
    """Each route once during the outage: (status, seconds, response). The forms carry
    CSRF tokens fetched before it, as a browser's open page would."""
    client = portal.client
    anonymous = portal.client.application.test_client()
    new_key = {"name": "during", "scopes": ["keys:read"], "lifetime_days": 30}
    calls = {
        "GET /keys (signed in)": lambda: client.get("/keys"),
        "POST /keys/new (signed in)": lambda: client.post(
            "/keys/new", data={**new_key, "csrf_token": tokens["portal"]}
        ),
        "GET /nowhere (signed in, a 404)": lambda: client.get("/nowhere"),
        "POST /api/v1/keys/validate": lambda: validate(anonymous, key),
        "GET /api/v1/keys (bearer)": lambda: anonymous.get(
            "/api/v1/keys", headers={"Authorization": f"Bearer {key}"}
        ),
        "POST /login": lambda: tokens["login_client"].post(
            "/login",
            data={"email": "ops@example.com", "password": PASSWORD, "csrf_token": tokens["login"]},
        ),
    }
    out = {}
    for name, call in calls.items():
        resp, seconds = timed(call)
        out[name] = (resp.status_code, seconds, resp)
        print(f"  {name}: {resp.status_code} in {seconds:.2f} s")
    return out


def _tokens(app: Flask, portal: Portal) -> dict[str, object]:
    login_client = app.test_client()
    return {
        "portal": csrf_token(portal.client.get("/keys/new").get_data(as_text=True)),
        "login_client": login_client,
        "login": csrf_token(login_client.get("/login").get_data(as_text=True)),
    }


def _check_outage(portal: Portal, key: str, tokens: dict) -> float:
    slowest = 0.0
    for name, (status, seconds, resp) in _routes(portal, key, tokens).items():
        assert seconds < ANSWER_WITHIN, f"{name} took {seconds:.2f} s"
        slowest = max(slowest, seconds)
        if "404" in name:  # needs no database, but its page must not try to load the user
            assert status == 404, (name, status)
            assert "Signed in as" not in resp.get_data(as_text=True)
            continue
        assert status == 503, (name, status, resp.get_data(as_text=True)[:300])
        assert resp.headers.get("Retry-After"), name
        assert resp.headers.get("X-Content-Type-Options") == "nosniff", name
        if "/api/" not in name:
            assert "Content-Security-Policy" in resp.headers, name
            assert "X-Frame-Options" in resp.headers, name
            page = resp.get_data(as_text=True)
            assert "Temporarily unavailable" in page, page[:500]
            assert "Signed in as" not in page  # drawn without loading the user
        else:
            assert resp.get_json()["error"] == "unavailable"
    return slowest


def _fault_cycle(app: Flask, proxy: Proxy, fault: str) -> None:
    portal, key = _setup(app)
    rec = recorder(app)
    served = [validate(portal.client, key).status_code for _ in range(5)]
    assert served == [200] * 5
    queued = rec.pending()
    assert queued >= 5  # five usage events, one key.validated audit event
    tokens = _tokens(app, portal)

    getattr(proxy, fault)()
    slowest = _check_outage(portal, key, tokens)
    _, flush_seconds = timed(rec.flush)  # the writer gives up in bounded time, keeps all
    assert flush_seconds < 2 * ANSWER_WITHIN
    assert rec.pending() >= queued
    slowest = max(slowest, _check_outage(portal, key, tokens))  # still bounded on a second round

    proxy.forward()
    recovery = wait_until(lambda: validate(portal.client, key).status_code == 200, within=10)
    assert portal.client.get("/keys").status_code == 200
    rec.flush()
    assert rec.pending() == 0
    # Nothing queued was lost: every validation answered 200 is in usage...
    assert count_rows(app, "usage_event") >= 6
    with app.app_context():
        from sqlalchemy import func, select

        from app.extensions import db
        from app.models import UsageRecord

        ok = db.session.scalar(
            select(func.count()).select_from(UsageRecord).where(UsageRecord.status == 200)
        )
    assert ok == 5 + 1  # the five before, and the first after recovery
    # ...and in the trail, which still verifies.
    assert audit_events(app, "key.validated")
    assert audit_events(app, "key.created")
    result = app.test_cli_runner().invoke(args=["audit", "verify"])
    assert result.exit_code == 0, result.output
    print(f"\n[{fault}] slowest answer {slowest:.2f} s, recovery {recovery:.2f} s")


def test_database_black_holed(proxied_app: Flask, pg_proxy: Proxy) -> None:
    _fault_cycle(proxied_app, pg_proxy, "blackhole")


def test_database_refusing(proxied_app: Flask, pg_proxy: Proxy) -> None:
    _fault_cycle(proxied_app, pg_proxy, "refuse")
