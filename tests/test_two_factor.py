"""Two-factor sign-in with an authenticator app: codes computed here with pyotp, as a
phone would; replay refused, one step of drift accepted, recovery codes single use."""

from __future__ import annotations

import re
import time

import pyotp
import pytest
from support.rows import audit_events, count_rows
from support.web import PASSWORD, Portal

from app.extensions import db

EMAIL = "alice@example.com"


def secret_on_page(html: str) -> str:
    m = re.search(r'id="totp-secret">([A-Z2-7]+)<', html)
    assert m, "no secret on the set-up page"
    return m.group(1)


def turn_on(portal: Portal) -> tuple[pyotp.TOTP, list[str]]:
    """Set up the app as a user would: start, read the secret, confirm with a code."""
    resp = portal.submit("/account/two-factor", {}, action="/account/two-factor/totp/start")
    assert resp.status_code == 302
    page = portal.client.get("/account/two-factor").get_data(as_text=True)
    assert 'src="data:image/svg+xml' in page and "otpauth://totp/" in page
    totp = pyotp.TOTP(secret_on_page(page))
    portal.confirmed_with = totp.now()  # type: ignore[attr-defined]
    resp = portal.submit(
        "/account/two-factor",
        {"password": PASSWORD, "code": portal.confirmed_with},  # type: ignore[attr-defined]
        action="/account/two-factor/totp/confirm",
    )
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200, html
    codes = re.findall(r"<li><code>([a-z0-9]{5}-[a-z0-9]{5})</code></li>", html)
    assert len(codes) == 10
    return totp, codes


def password_step(portal: Portal, email: str = EMAIL):
    resp = portal.login(email)
    assert resp.status_code == 302 and resp.headers["Location"] == "/login/code"
    return resp


def code_step(portal: Portal, code: str):
    return portal.submit("/login/code", {"code": code})


def next_code(totp: pyotp.TOTP) -> str:
    """The code of the next 30-second step: accepted (one step of drift) and later than
    the one the set-up used, so no test waits for the clock."""
    return totp.at(time.time() + totp.interval)


def test_turn_on_then_log_in_with_a_code(app, user, client):
    totp, _ = turn_on(user)
    user.logout()
    password_step(user)
    assert client.get("/keys").status_code == 302  # the password alone opens nothing
    resp = code_step(user, next_code(totp))
    assert resp.status_code == 302 and resp.headers["Location"] == "/dashboard"
    assert client.get("/keys").status_code == 200
    assert audit_events(app, "user.2fa_enabled")
    logins = audit_events(app, "user.login")
    assert '"factor":"totp"' in logins[-1].details


def test_secret_is_not_stored_nor_audited(app, user):
    totp, codes = turn_on(user)
    with app.app_context():
        dump = "\n".join(
            repr(row)
            for table in ("totp_secret", "recovery_code", "audit_event")
            for row in db.session.execute(db.text(f'SELECT * FROM "{table}"'))
        )
    assert totp.secret not in dump and totp.secret.lower() not in dump
    for code in codes:
        assert code not in dump and code.replace("-", "") not in dump


def test_a_code_is_accepted_once(app, user, client):
    totp, _ = turn_on(user)
    user.logout()
    code = next_code(totp)
    password_step(user)
    assert code_step(user, code).status_code == 302
    user.logout()
    password_step(user)
    again = code_step(user, code)
    assert again.status_code == 400
    assert "already used" in again.get_data(as_text=True)
    assert client.get("/keys").status_code == 302
    assert audit_events(app, "user.2fa_failed")[-1].sensitivity == "high"


def test_the_code_used_to_turn_on_cannot_log_in(app, user):
    turn_on(user)
    user.logout()
    password_step(user)
    # The step claimed at set-up (or an earlier one) cannot be used again.
    assert code_step(user, user.confirmed_with).status_code == 400


def test_one_step_of_drift_is_accepted_two_are_not(app, user, client):
    totp, _ = turn_on(user)
    user.logout()
    password_step(user)
    two_behind = totp.at(time.time() - 2 * totp.interval - 1)
    if two_behind not in {totp.at(time.time() + d * totp.interval) for d in (-1, 0, 1)}:
        assert code_step(user, two_behind).status_code == 400
    resp = code_step(user, next_code(totp))
    assert resp.status_code == 302 and resp.headers["Location"] == "/dashboard"


def test_recovery_code_works_once(app, user, client):
    _, codes = turn_on(user)
    user.logout()
    password_step(user)
    resp = code_step(user, codes[0].upper().replace("-", " "))
    assert resp.status_code == 302
    assert client.get("/keys").status_code == 200
    used = audit_events(app, "user.recovery_code_used")
    assert used and used[-1].sensitivity == "high" and '"codes_left":9' in used[-1].details
    user.logout()
    password_step(user)
    assert code_step(user, codes[0]).status_code == 400
    assert code_step(user, codes[1]).status_code == 302


def test_wrong_codes_spend_the_account_budget(app, user, client):
    app.config["LOGIN_ACCOUNT_LIMIT"] = "3 per 15 minutes"
    turn_on(user)
    user.logout()
    password_step(user)  # from a browser the account does not know: one of the three
    for _ in range(2):
        assert code_step(user, "000000").status_code == 400
    resp = code_step(user, "000000")
    assert resp.status_code == 429 and "Retry-After" in resp.headers


def test_code_step_needs_the_password_step_first(app, user, client):
    turn_on(user)
    user.logout()
    resp = client.get("/login/code")
    assert resp.status_code == 302 and resp.headers["Location"] == "/login"


@pytest.mark.parametrize("code", ["", "12345", "1234567", "abc", "x" * 500, "12\x0034"])
def test_bad_codes_are_refused_cleanly(app, user, client, code):
    turn_on(user)
    user.logout()
    password_step(user)
    resp = code_step(user, code)
    assert resp.status_code == 400
    assert client.get("/keys").status_code == 302


def test_turning_off_needs_password_and_code(app, user, client):
    totp, _ = turn_on(user)
    wrong = user.submit(
        "/account/two-factor",
        {"password": "not the password at all", "code": totp.now()},
        action="/account/two-factor/totp/disable",
    )
    assert wrong.status_code == 400
    assert count_rows(app, "totp_secret") == 1
    resp = user.submit(
        "/account/two-factor",
        {"password": PASSWORD, "code": next_code(totp)},
        action="/account/two-factor/totp/disable",
    )
    assert resp.status_code == 302
    assert count_rows(app, "totp_secret") == 0 and count_rows(app, "recovery_code") == 0
    assert audit_events(app, "user.2fa_disabled")
    user.logout()
    assert user.login(EMAIL).headers["Location"] == "/dashboard"


def test_confirming_with_a_wrong_code_changes_nothing(app, user):
    user.submit("/account/two-factor", {}, action="/account/two-factor/totp/start")
    resp = user.submit(
        "/account/two-factor",
        {"password": PASSWORD, "code": "000000"},
        action="/account/two-factor/totp/confirm",
    )
    assert resp.status_code == 400
    assert count_rows(app, "recovery_code") == 0
    assert not audit_events(app, "user.2fa_enabled")
    user.logout()
    assert user.login(EMAIL).headers["Location"] == "/dashboard"
