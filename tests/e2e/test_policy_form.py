"""A refused key policy in a real browser: the errors are in view, beside their fields,
and what was typed is still there (issue 18)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("who", ["person", "phone"])
def test_a_refused_policy_keeps_the_text_and_shows_the_errors_in_view(who, request):
    person = request.getfixturevalue(who)  # 1280 px and 390 px wide
    page = person.page
    secret = person.create_key("policies in view")
    page.goto(f"/keys/{secret.split('.')[1]}")
    ranges = "203.0.113.0/24\n10.0.0.0/99"
    meta = '{"customer": "c-7",}'
    page.get_by_label("IP allowlist").fill(ranges)
    page.get_by_label("Metadata (JSON object)").fill(meta)
    person.console.allow("400")  # the refused form answers 400 on purpose
    page.get_by_role("button", name="Save policies").click()
    page.wait_for_load_state()

    allow = page.get_by_label("IP allowlist")
    expect(allow).to_be_focused()
    expect(allow).to_be_in_viewport()
    expect(allow).to_have_value(ranges)
    expect(page.locator("#ip_allowlist-error")).to_be_in_viewport()
    expect(page.locator("#ip_allowlist-error")).to_contain_text("“10.0.0.0/99” is not an IP range")
    expect(page.get_by_label("Metadata (JSON object)")).to_have_value(meta)
    expect(page.locator("#meta-error")).to_contain_text("Not JSON")


@pytest.mark.parametrize("who", ["person", "phone"])
def test_a_refused_own_limit_is_marked_in_view_and_changes_nothing(who, request):
    person = request.getfixturevalue(who)  # 1280 px and 390 px wide
    page = person.page
    secret = person.create_key("own limit in view")
    key_page = f"/keys/{secret.split('.')[1]}"
    page.goto(key_page)
    limit = page.get_by_label("Own rate limit (requests a minute)")
    limit.fill("30")
    page.get_by_role("button", name="Save policies").click()
    page.wait_for_load_state()
    expect(page.locator("#policies")).to_contain_text("30 a minute (this key's own limit")

    limit = page.get_by_label("Own rate limit (requests a minute)")
    page.get_by_label("IP allowlist").fill("203.0.113.0/24")
    limit.fill("61")  # above the basic tier's 60
    person.console.allow("400")  # the refused form answers 400 on purpose
    page.get_by_role("button", name="Save policies").click()
    page.wait_for_load_state()

    limit = page.get_by_label("Own rate limit (requests a minute)")
    expect(limit).to_be_focused()
    expect(limit).to_be_in_viewport()
    expect(limit).to_have_value("61")
    expect(limit).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#rate_limit-error")).to_be_in_viewport()
    expect(page.locator("#rate_limit-error")).to_contain_text("at most 60 a minute")
    expect(page.get_by_label("IP allowlist")).to_have_value("203.0.113.0/24")
    # Nothing changed: the page, opened again, still has the old limit and no allowlist.
    page.goto(key_page)
    expect(page.get_by_label("Own rate limit (requests a minute)")).to_have_value("30")
    expect(page.get_by_label("IP allowlist")).to_have_value("")
