"""Login throttling per account (any client IP) and per IP; the failed-login notice."""

from __future__ import annotations

import json
import re

import pytest
from support.db import base_config, fresh_db
from support.rows import audit_events
from support.web import PASSWORD, Portal

from app import create_app
from app.extensions import db

WRONG = "not the right password"


@pytest.fixture
def proxied(migrated_db, tmp_path):
    """Behind one proxy: X-Forwarded-For is the client IP, as PROXY_FIX_HOPS=1 says."""
    app = create_app(
        {
            **base_config(tmp_path, fresh_db(migrated_db, tmp_path)),
            "PROXY_FIX_HOPS": 1,
            "LOGIN_RATE_LIMIT": "1000/minute",  # the per-IP limit stays out of the way
        }
    )
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def attempt(portal: Portal, email: str, password: str, ip: str):
    return portal.submit(
        "/login", {"email": email, "password": password}, headers={"X-Forwarded-For": ip}
    )


def normalised(html: str) -> str:
    return re.sub(r'value="[^"]*"', 'value=""', html)


def test_ten_failures_from_ten_ips_lock_the_account_for_the_right_password_too(proxied):
    alice = Portal(proxied.test_client())
    alice.register("alice@example.com")
    alice.logout()
    codes = [
        attempt(alice, "alice@example.com", WRONG, f"203.0.113.{i}").status_code
        for i in range(1, 11)
    ]
    assert codes == [400] * 10
    right = attempt(alice, "alice@example.com", PASSWORD, "198.51.100.7")
    wrong = attempt(alice, "alice@example.com", WRONG, "198.51.100.8")
    assert right.status_code == wrong.status_code == 429
    assert "Too many log-in attempts" in right.get_data(as_text=True)
    assert normalised(right.get_data(as_text=True)) == normalised(wrong.get_data(as_text=True))
    assert int(right.headers["Retry-After"]) > 60
    assert alice.client.get("/keys").status_code == 302  # not logged in

    refused = audit_events(proxied, "user.login_throttled")
    assert len(refused) == 2
    assert {e.sensitivity for e in refused} == {"high"}
    assert {e.actor_ip for e in refused} == {"198.51.100.7", "198.51.100.8"}
    assert {e.target for e in refused} == {"user:1"}
    assert all(PASSWORD not in e.details for e in refused)


def test_other_accounts_and_unknown_addresses_are_counted_on_their_own(proxied):
    bob = Portal(proxied.test_client())
    bob.register("bob@example.com")
    bob.logout()
    for i in range(10):
        assert attempt(bob, "ghost@example.com", WRONG, f"203.0.113.{i}").status_code == 400
    # An address with no account is throttled the same way: nothing tells them apart.
    assert attempt(bob, "ghost@example.com", WRONG, "203.0.113.99").status_code == 429
    assert attempt(bob, "bob@example.com", PASSWORD, "203.0.113.1").status_code == 302


def test_the_account_limit_is_configurable(migrated_db, tmp_path, monkeypatch):
    monkeypatch.setenv("LOGIN_ACCOUNT_LIMIT", "3 per 15 minutes")
    app = create_app(
        {**base_config(tmp_path, fresh_db(migrated_db, tmp_path)), "PROXY_FIX_HOPS": 1}
    )
    try:
        alice = Portal(app.test_client())
        alice.register("alice@example.com")
        alice.logout()
        codes = [
            attempt(alice, "alice@example.com", WRONG, f"192.0.2.{i}").status_code for i in range(4)
        ]
        assert codes == [400, 400, 400, 429]
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def test_after_failures_the_next_login_says_how_many_and_from_where(proxied):
    alice = Portal(proxied.test_client())
    alice.register("alice@example.com")
    alice.logout()
    attempt(alice, "alice@example.com", PASSWORD, "192.0.2.50")  # a clean log-in first
    alice.logout()
    for ip in ("203.0.113.5", "203.0.113.5", "198.51.100.9"):
        attempt(alice, "alice@example.com", WRONG, ip)
    resp = attempt(alice, "alice@example.com", PASSWORD, "192.0.2.50")
    assert resp.status_code == 302
    page = alice.client.get("/keys").get_data(as_text=True)
    assert "3 failed log-in attempts on your account since your last log-in" in page
    assert "from 203.0.113.5, 198.51.100.9" in page
    alice.logout()
    attempt(alice, "alice@example.com", PASSWORD, "192.0.2.50")
    assert "failed log-in" not in alice.client.get("/keys").get_data(as_text=True)


def test_a_known_device_logs_in_through_a_lockout_made_elsewhere(proxied):
    """OWASP device cookies: ten wrong passwords from ten addresses lock out unknown
    browsers, not the one the owner has logged in with before."""
    alice = Portal(proxied.test_client())
    alice.register("alice@example.com")
    alice.logout()
    assert attempt(alice, "alice@example.com", PASSWORD, "192.0.2.50").status_code == 302
    alice.logout()  # her browser now holds a device cookie the account knows
    mallory = Portal(proxied.test_client())
    # Nine: her own log-in from a then unknown browser spent one of the ten.
    for i in range(1, 10):
        assert attempt(mallory, "alice@example.com", WRONG, f"203.0.113.{i}").status_code == 400
    assert attempt(mallory, "alice@example.com", PASSWORD, "203.0.113.77").status_code == 429
    assert attempt(alice, "alice@example.com", PASSWORD, "192.0.2.50").status_code == 302
    assert alice.client.get("/keys").status_code == 200


def test_a_known_device_has_a_budget_of_its_own(proxied):
    """A stolen device cookie is no free pass: its guesses are throttled too, and they
    do not spend the account's budget for everyone else."""
    alice = Portal(proxied.test_client())
    alice.register("alice@example.com")
    alice.logout()
    attempt(alice, "alice@example.com", PASSWORD, "192.0.2.50")
    alice.logout()
    codes = [
        attempt(alice, "alice@example.com", WRONG, "192.0.2.50").status_code for _ in range(10)
    ]
    assert codes == [400] * 10
    assert attempt(alice, "alice@example.com", PASSWORD, "192.0.2.50").status_code == 429
    throttled = audit_events(proxied, "user.login_throttled")
    assert json.loads(throttled[-1].details)["limit"] == "device"
    other = Portal(proxied.test_client())
    assert attempt(other, "alice@example.com", PASSWORD, "198.51.100.1").status_code == 302


def test_concurrent_wrong_logins_spend_exactly_the_account_budget(proxied):
    """The count is one atomic step in the limit storage: 40 guesses at once get
    exactly the 10 the budget allows (a test-then-spend let 13-14 through)."""
    import threading

    Portal(proxied.test_client()).register("alice@example.com")
    clients = []
    for i in range(40):
        portal = Portal(proxied.test_client())
        page = portal.client.get("/login").get_data(as_text=True)
        from support.web import csrf_token

        clients.append((portal, csrf_token(page), f"203.0.113.{i + 1}"))
    barrier = threading.Barrier(40)
    codes: list[int] = []

    def guess(portal: Portal, token: str, ip: str) -> None:
        barrier.wait()
        resp = portal.client.post(
            "/login",
            data={"email": "alice@example.com", "password": WRONG, "csrf_token": token},
            headers={"X-Forwarded-For": ip},
        )
        codes.append(resp.status_code)

    threads = [threading.Thread(target=guess, args=c) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [400] * 10 + [429] * 30, codes
