"""An administrator revokes a user's key with a reason; the owner, in a browser of their
own, sees on the key page that an administrator revoked it and why."""

from __future__ import annotations

import re

import pytest
from liveserver import ADMIN_EMAIL
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e

REASON = "Pasted into a public issue tracker"


def test_admin_revokes_a_key_with_a_reason_and_the_owner_sees_it(visitor):
    page = visitor.page
    visitor.register()
    owner = visitor.email
    key = visitor.create_key("payments worker")
    public_id = key.split(".")[1]
    page.context.clear_cookies()

    visitor.login(ADMIN_EMAIL)
    page.goto("/admin/users")
    page.get_by_label("Search by email").fill(owner)
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name=owner).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(owner)
    row = page.locator(f"#key-{public_id}")
    expect(row).to_contain_text("payments worker")
    # Without a reason the browser does not even send the form.
    row.get_by_role("button", name="Revoke").click()
    expect(row).to_contain_text("active")
    row.get_by_label(re.compile("Reason for revoking")).fill(REASON)
    row.get_by_role("button", name="Revoke").click()
    expect(page.locator(".flash")).to_contain_text("its owner sees why")
    expect(page.locator(f"#key-{public_id}")).to_contain_text("revoked")
    expect(page.locator(f"#key-{public_id}")).to_contain_text(REASON)
    page.context.clear_cookies()

    visitor.login(owner)
    page.goto("/keys")
    page.get_by_role("link", name="payments worker").click()
    notice = page.locator("#revoked-by-admin")
    expect(notice).to_contain_text("Revoked by an administrator")
    expect(notice).to_contain_text(REASON)
    expect(page.get_by_role("heading", level=1)).to_contain_text("revoked")
