"""What a person does in a real browser: register, create, copy, revoke, rotate."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e

KEY_RE = re.compile(r"^klk\.[0-9A-Za-z]+\.[0-9A-Za-z]+$")


def test_new_person_sees_an_empty_state_that_leads_to_a_first_key(person):
    page = person.page
    expect(page.get_by_role("heading", name="API keys", exact=True)).to_be_visible()
    expect(page.get_by_text("No keys yet")).to_be_visible()
    expect(page.get_by_role("navigation", name="Main")).to_contain_text(person.email)
    page.get_by_role("link", name="Create your first key").click()
    expect(page).to_have_url(re.compile(r"/keys/new$"))


def test_created_key_is_shown_once_and_copies_to_the_clipboard(person):
    page = person.page
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        secret_page = page  # the POST answer is the once-only page
        person_key = person.create_key(
            "billing worker", scopes=("keys:read", "usage:read"), custom="orders:read"
        )
    assert posted.value.headers["cache-control"] == "no-store"
    assert KEY_RE.match(person_key)
    expect(secret_page.get_by_role("alert")).to_contain_text("You will not see it again")
    expect(secret_page.locator("#new-key")).to_have_value(person_key)

    secret_page.get_by_role("button", name="Copy").click()
    expect(secret_page.locator("#copy-status")).to_contain_text("clipboard")
    assert secret_page.evaluate("navigator.clipboard.readText()") == person_key

    # Reloading re-sends the form: the server recognises it and never shows the secret.
    secret_page.reload()
    expect(secret_page.get_by_text("shown only once").first).to_be_visible()
    assert person_key not in secret_page.content()

    page.goto("/keys")
    row = page.get_by_role("row", name=re.compile("billing worker"))
    expect(row).to_contain_text(person_key.rsplit(".", 1)[0])
    expect(row).to_contain_text("orders:read")
    expect(row).to_contain_text("active")
    assert person_key not in page.content()

    back(page)
    assert person_key not in person.html()


def back(page) -> None:
    """History back; a no-store POST answer is refused rather than shown from cache."""
    try:
        page.go_back()
    except PlaywrightError as exc:
        # Chromium will not show the once-only page from its cache and offers to
        # resend the form instead (which the server refuses to mint again).
        assert "ERR_CACHE_MISS" in str(exc)


def test_going_back_to_the_once_only_page_never_shows_the_secret(person):
    page = person.page
    key = person.create_key("deploy bot")
    page.get_by_role("link", name=re.compile("stored it safely")).click()
    expect(page.get_by_role("heading", name=re.compile("deploy bot"))).to_be_visible()
    assert key not in person.html()
    back(page)
    assert key not in person.html()
    page.go_forward()
    assert key not in person.html()
    page.goto("/keys")
    back(page)
    assert key not in person.html()


def test_revoke_needs_the_confirmation_box(person):
    page = person.page
    key = person.create_key("old laptop")
    page.goto(f"/keys/{key.split('.')[1]}")
    revoke = page.get_by_role("button", name="Revoke key")

    revoke.click()  # box not ticked: the browser refuses to send the form
    expect(page.locator("h1 .badge")).to_have_text("active")

    page.get_by_label(re.compile("stops working at once")).check()
    revoke.click()
    expect(page.locator("h1 .badge")).to_have_text("revoked")
    expect(page.get_by_role("status").first).to_contain_text("revoked")
    expect(page.get_by_role("button", name="Revoke key")).to_have_count(0)

    page.goto("/keys")
    expect(page.get_by_role("row", name=re.compile("old laptop"))).to_contain_text("revoked")


def test_rotate_shows_the_new_key_once_and_keeps_the_old_one_for_the_grace_period(person):
    page = person.page
    old = person.create_key("ci pipeline", scopes=("keys:write",))
    page.goto(f"/keys/{old.split('.')[1]}")
    page.get_by_label("Old key stops working").select_option("1h")
    page.get_by_role("button", name="Rotate key").click()

    expect(page.get_by_role("heading", name="Your rotated API key")).to_be_visible()
    new = page.input_value("#new-key")
    assert KEY_RE.match(new) and new != old

    page.goto("/keys")
    rows = page.get_by_role("row", name=re.compile("ci pipeline"))
    expect(rows).to_have_count(2)
    expect(page.locator("tbody")).to_contain_text(new.rsplit(".", 1)[0])
    expect(page.locator("tbody")).to_contain_text(old.rsplit(".", 1)[0])
    content = page.content()
    assert new not in content and old not in content


def test_another_persons_key_is_not_found(person, visitor):
    page = person.page
    key = person.create_key("private")
    person.console.allow(r"status of 404")
    page.context.clear_cookies()
    other = person.email
    person.email = "second-" + other
    person.register()
    response = page.goto(f"/keys/{key.split('.')[1]}")
    assert response is not None and response.status == 404
    expect(page.get_by_role("heading", level=1)).to_contain_text("Page not found")
    assert key.split(".")[1] not in page.content()
