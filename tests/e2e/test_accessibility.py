"""axe-core's WCAG 2.1 A/AA rules, light and dark, on every page a person or an admin uses."""

from __future__ import annotations

import pytest
from axe_playwright_python.base import AXE_SCRIPT
from liveserver import ADMIN_EMAIL

pytestmark = pytest.mark.e2e

OPTIONS = {
    "runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]},
    "resultTypes": ["violations"],
}


def _violations(page) -> list[str]:
    """Both colour schemes on the current page. axe goes in through page.evaluate (CDP),
    so the page's own CSP stays on while it runs."""
    found = []
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE_SCRIPT)
    for scheme in ("light", "dark"):
        # Reduced motion turns off colour transitions, so axe sees the settled colours.
        page.emulate_media(color_scheme=scheme, reduced_motion="reduce")
        result = page.evaluate("(options) => axe.run(document, options)", OPTIONS)
        found += [
            f"{page.url} [{scheme}]: {v['id']} ({v['impact']}): {v['help']} at "
            + ", ".join(str(n["target"][0]) for n in v["nodes"][:3])
            for v in result["violations"]
        ]
    page.emulate_media(color_scheme="light")
    return found


def test_pages_pass_axe_wcag_aa_in_light_and_dark(visitor):
    page = visitor.page
    found: list[str] = []
    for path in ("/forgot", "/login", "/register"):
        page.goto(path)
        found += _violations(page)
    visitor.console.allow(r"status of 400")  # the form with errors answers 400
    page.get_by_role("button", name="Create account").click()
    found += _violations(page)
    visitor.register()
    found += _violations(page)  # empty state
    key = visitor.create_key("axe check", scopes=("keys:read",), custom="orders:read")
    page.get_by_role("button", name="Copy").click()
    found += _violations(page)  # the once-only page, after copying
    for path in ("/keys", "/keys/new", f"/keys/{key.split('.')[1]}", "/account", "/billing"):
        page.goto(path)
        found += _violations(page)
    page.goto("/account/two-factor")
    page.get_by_role("button", name="Set up an authenticator app").click()
    found += _violations(page)  # the QR code, secret and confirm form
    page.context.clear_cookies()
    visitor.login(ADMIN_EMAIL)
    for path in ("/admin/", "/admin/users", "/admin/keys", "/admin/audit", "/admin/two-factor"):
        page.goto(path)
        found += _violations(page)
    for path in ("/admin/security", "/admin/billing"):
        page.goto(path)
        page.wait_for_load_state("networkidle")  # the charts have drawn
        found += _violations(page)
    assert found == []
