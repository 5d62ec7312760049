"""Two-factor sign-in, passkeys and reset by mail in Debian's chromium: TOTP set up and
used, a passkey added and used with Chromium's virtual authenticator (CDP), and the
reset mail's link (from a real SMTP server on 127.0.0.1) followed in the browser.

The server is reached as http://localhost:PORT: WebAuthn needs a host name (an IP
address cannot be a relying party id), and localhost is a secure context."""

from __future__ import annotations

import os
import re
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyotp
import pytest
from liveserver import PASSWORD, LiveServer
from playwright.sync_api import expect

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from smtp_server import link_in, smtp_server

pytestmark = pytest.mark.e2e
NEW_PASSWORD = "a new passphrase chosen in the browser"
IMG = Path(__file__).resolve().parents[2] / "docs" / "img"


@pytest.fixture(scope="module")
def mail_server(chromium) -> Iterator[tuple]:
    with smtp_server() as (box, settings):
        server = LiveServer(
            {
                "MAIL_URL": settings["MAIL_URL"],
                "MAIL_RETRY_BASE": "0.05",
                "LOGIN_ACCOUNT_LIMIT": "100/minute",
            }
        )
        server.start()
        server.url = f"http://localhost:{server.port}"
        try:
            yield server, box
        finally:
            server.close()


@pytest.fixture
def page(browser, mail_server, request):
    server, _ = mail_server
    e2e = next(
        m
        for m in list(sys.modules.values())
        if str(getattr(m, "__file__", "") or "").endswith(os.path.join("e2e", "conftest.py"))
    )
    context = e2e._context(browser, server, viewport={"width": 1280, "height": 800})
    console = e2e.Console()
    # Refused on purpose: a wrong code, and the used reset link opened again.
    console.allow(r"status of 400 .*(/login/code|/reset/)")
    person = e2e.Browser(server, context, console)
    yield person.page
    e2e._shoot_if_failed(request, context)
    context.close()
    assert console.unexpected() == [], "browser console errors / CSP violations"


def register(page, email: str) -> None:
    page.goto("/register")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Repeat password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    page.wait_for_url("**/keys")


def log_out(page) -> None:
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/login")


def password_step(page, email: str, password: str = PASSWORD) -> None:
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password", exact=True).fill(password)
    page.locator("main").get_by_role("button", name="Log in", exact=True).click()


def shoot(page, name: str) -> None:
    """docs/img's pictures, when asked (KEYLEDGER_SHOTS=1)."""
    if os.environ.get("KEYLEDGER_SHOTS") == "1":
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(IMG / name), full_page=True)


def test_turn_on_totp_and_log_in_with_a_code(page):
    email = f"totp-{uuid.uuid4().hex[:8]}@example.com"
    register(page, email)
    page.goto("/account")
    page.get_by_role("link", name="Manage two-factor sign-in").click()
    page.get_by_role("button", name="Set up an authenticator app").click()
    expect(page.get_by_role("img", name=re.compile("QR code"))).to_be_visible()
    secret = page.locator("#totp-secret").inner_text()
    totp = pyotp.TOTP(secret)
    page.get_by_label("Your password").fill(PASSWORD)
    page.get_by_label("Code from the app").fill(totp.now())
    shoot(page, "two-factor-setup.png")
    page.get_by_role("button", name="Turn on two-factor sign-in").click()
    expect(page.get_by_role("heading", name="Your recovery codes")).to_be_visible()
    expect(page.locator(".recovery-codes li")).to_have_count(10)
    log_out(page)

    password_step(page, email)
    page.wait_for_url("**/login/code")
    expect(page.get_by_role("heading", name="One more step")).to_be_visible()
    page.get_by_label("Code").fill("000000")
    page.get_by_role("button", name="Verify").click()
    expect(page.locator(".error")).to_contain_text("not right")
    shoot(page, "two-factor-code.png")
    page.get_by_label("Code").fill(totp.at(time.time() + totp.interval))
    page.get_by_role("button", name="Verify").click()
    page.wait_for_url("**/dashboard")


def _virtual_authenticator(page):
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    found = cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    return cdp, found["authenticatorId"]


def test_passkey_added_then_used_after_the_password_and_on_its_own(page):
    email = f"passkey-{uuid.uuid4().hex[:8]}@example.com"
    cdp, authenticator = _virtual_authenticator(page)
    register(page, email)
    page.goto("/account/two-factor")
    page.get_by_label("Name for a new passkey").fill("Laptop")
    page.get_by_role("button", name="Add a passkey").click()
    expect(page.locator("#passkey-codes")).to_be_visible()
    expect(page.locator("#passkey-codes li")).to_have_count(10)
    creds = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})["credentials"]
    assert len(creds) == 1 and creds[0]["isResidentCredential"]
    page.goto("/account/two-factor")
    expect(page.locator(".passkeys")).to_contain_text("Laptop")
    log_out(page)

    # After the password, the passkey is the second step.
    password_step(page, email)
    page.wait_for_url("**/login/code")
    page.get_by_role("button", name="Use a passkey").click()
    page.wait_for_url("**/dashboard")
    log_out(page)

    # On its own: the discoverable passkey names the account; user verification is on.
    page.goto("/login")
    page.get_by_role("button", name="Use a passkey instead").click()
    page.wait_for_url("**/dashboard")
    expect(page.locator("body")).to_contain_text(email)


def test_reset_mail_link_followed_in_the_browser(page, mail_server):
    _, box = mail_server
    email = f"reset-{uuid.uuid4().hex[:8]}@example.com"
    register(page, email)
    log_out(page)
    page.get_by_role("link", name="Forgot your password?").click()
    page.get_by_label("Email").fill(email)
    before = len(box.messages)
    page.get_by_role("button", name="Send me a reset link").click()
    expect(page.get_by_role("heading", name="Check your mail")).to_be_visible()
    deadline = time.monotonic() + 15
    while len(box.messages) == before and time.monotonic() < deadline:
        time.sleep(0.1)
    mine = [m for m in box.messages if m["To"] == email]
    assert mine, "no reset mail arrived"
    page.goto(link_in(mine[-1]))
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Repeat new password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Set the new password").click()
    page.wait_for_url("**/login")
    expect(page.locator(".flash")).to_contain_text("Your password is changed")
    password_step(page, email, NEW_PASSWORD)
    page.wait_for_url("**/dashboard")
    # The link is dead now.
    page.goto(link_in(mine[-1]))
    expect(page.get_by_role("heading", name="This link is no longer valid")).to_be_visible()
