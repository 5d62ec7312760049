"""The account page in a real browser: sessions (End, log out everywhere), password change."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator

import pytest
from liveserver import PASSWORD
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e

PHONE_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
)
NEW_PASSWORD = "a new passphrase from the browser"


@pytest.fixture
def phone_browser(browser, live_server, person) -> Iterator:
    """A second device of the same person (not logged in yet), built with the e2e
    conftest's own helpers (console and CSP checks included)."""
    e2e = sys.modules[type(person).__module__]
    context = e2e._context(browser, live_server, user_agent=PHONE_UA)
    other = e2e.Browser(live_server, context, e2e.Console())
    yield other
    context.close()
    assert other.console.unexpected() == []


def log_in(device, email: str, password: str = PASSWORD) -> None:
    page = device.page
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password", exact=True).fill(password)
    page.locator("main").get_by_role("button", name="Log in").click()
    page.wait_for_url("**/dashboard")


def logged_out(device) -> bool:
    device.page.goto("/keys")
    return "/login" in device.page.url


def test_account_page_sessions_end_log_out_everywhere_and_password_change(person, phone_browser):
    page = person.page
    log_in(phone_browser, person.email)

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Account").click()
    expect(page.get_by_role("heading", name="Your account", exact=True)).to_be_visible()
    rows = page.locator("table tbody tr")
    expect(rows).to_have_count(2)
    this = page.locator("tr[aria-current=true]")
    expect(this).to_contain_text("this one")
    phone_row = page.get_by_role("row", name=re.compile("Mobile Safari on iOS"))
    expect(phone_row).to_contain_text("127.0.0.1")

    # End the phone's session from the laptop.
    phone_row.get_by_role("button", name=re.compile("^End")).click()
    expect(page.locator(".flash")).to_contain_text("Session ended")
    expect(rows).to_have_count(1)
    assert logged_out(phone_browser)

    # Log out everywhere (else).
    log_in(phone_browser, person.email)
    page.reload()
    page.get_by_role("button", name="Log out everywhere else").click()
    expect(page.locator(".flash")).to_contain_text("1 session ended")
    assert logged_out(phone_browser)
    assert not logged_out(person)

    # Change the password: the phone's session ends, this one stays.
    log_in(phone_browser, person.email)
    page.goto("/account")
    page.get_by_label("Current password").fill(PASSWORD)
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Repeat new password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Change password").click()
    expect(page.locator(".flash")).to_contain_text("Password changed. 1 other session ended.")
    assert logged_out(phone_browser)
    assert not logged_out(person)
    log_in(phone_browser, person.email, NEW_PASSWORD)


def test_a_wrong_current_password_changes_nothing(person):
    page = person.page
    person.console.allow(r"status of 400")
    page.goto("/account")
    page.get_by_label("Current password").fill("this is not my password")
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Repeat new password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Change password").click()
    expect(page.locator("main")).to_contain_text("The current password is wrong")
    page.context.clear_cookies()
    log_in(person, person.email, PASSWORD)
