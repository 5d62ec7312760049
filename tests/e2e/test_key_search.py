"""Search the keys list and copy a key's ID in a real browser (issue 18)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("who", ["person", "phone"])
def test_search_then_copy_a_key_id(who, request):
    person = request.getfixturevalue(who)  # 1280 px and 390 px wide
    page = person.page
    person.create_key("search alpha")
    beta = person.create_key("search beta", scopes=("usage:read",))
    beta_id = beta.rsplit(".", 1)[0]

    page.goto("/keys")
    page.get_by_role("searchbox", name="Search").fill("BETA")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"/keys\?q=BETA"))
    expect(page.locator("#match-count")).to_contain_text("1 of 2 keys match")
    expect(page.get_by_role("link", name="search alpha")).to_have_count(0)

    page.get_by_role("button", name=f"Copy key ID {beta_id}").click()
    expect(page.locator("#copy-status")).to_contain_text(f"Key ID {beta_id} is on your clipboard")
    assert page.evaluate("navigator.clipboard.readText()") == beta_id

    page.get_by_label("Status", exact=True).select_option("revoked")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_role("heading", name="No key matches")).to_be_visible()
    page.get_by_role("link", name="Clear filters").click()
    expect(page.get_by_role("link", name="search alpha")).to_be_visible()
