"""Expiry presets and the date picker in a real browser (issue 18): typing a date picks
"Until a date" by itself, and the key expires on that date."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("who", ["person", "phone"])
def test_a_date_typed_in_the_picker_sets_the_expiry(who, request):
    person = request.getfixturevalue(who)  # 1280 px and 390 px wide
    page = person.page
    page.goto("/keys/new")
    page.get_by_label("Name").fill("until a date")
    page.get_by_label("keys:read", exact=True).check()
    expect(page.get_by_label("90 days, the longest your tier allows", exact=False)).to_be_checked()
    on = (datetime.now(UTC) + timedelta(days=12)).date().isoformat()
    page.get_by_label("Expiry date").fill(on)
    expect(page.get_by_label("Until a date")).to_be_checked()
    page.get_by_role("button", name="Create key").click()
    secret = page.input_value("#new-key")
    page.goto(f"/keys/{secret.split('.')[1]}")
    expect(page.locator("dl.meta").first).to_contain_text(on)
