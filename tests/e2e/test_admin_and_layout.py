"""Admin pages, keyboard-only use and a 390px phone. Every test also fails on a console
error or CSP violation (see conftest); test_accessibility visits every page."""

from __future__ import annotations

import re

import pytest
from liveserver import ADMIN_EMAIL
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e


def test_admin_sees_users_all_keys_the_audit_trail_and_verifies_it(visitor):
    page = visitor.page
    visitor.register()
    key = visitor.create_key("reporting job", scopes=("usage:read",))
    owner = visitor.email
    page.context.clear_cookies()
    visitor.login(ADMIN_EMAIL)

    nav = page.get_by_role("navigation", name="Main")
    nav.get_by_role("link", name="Users").click()
    expect(page.get_by_role("heading", name="Users", exact=True)).to_be_visible()
    page.get_by_role("link", name=owner).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(owner)
    expect(page.locator("main")).to_contain_text("reporting job")

    nav.get_by_role("link", name="All keys").click()
    row = page.get_by_role("row", name=re.compile("reporting job"))
    expect(row).to_contain_text(owner)
    expect(row).to_contain_text(key.rsplit(".", 1)[0])
    assert key not in visitor.html()

    nav.get_by_role("link", name="Audit trail").click()
    expect(page.get_by_role("heading", name="Audit trail", exact=True)).to_be_visible()
    expect(page.locator("main")).to_contain_text("key.created")
    page.get_by_role("button", name="Verify now").click()
    expect(page.locator("main")).to_contain_text(re.compile("intact", re.IGNORECASE))
    assert key not in visitor.html()


# The top bar's parts, one per row they sit in; and each owner email of the keys table:
# its parts' lines, whether its link passes its cell, whether a part is cut short.
ADMIN_LAYOUT = """() => {
  const mid = (el) => {
    const r = el.getBoundingClientRect();
    return Math.round(r.top + r.height / 2);
  };
  const parts = [...document.querySelector('.nav').children]
    .filter((el) => el.getBoundingClientRect().width > 0 && !el.matches('.spacer'));
  const emails = [...document.querySelectorAll('#keys-table td[data-label=Owner]')].map((td) => {
    const link = td.querySelector('a'), spans = [...link.querySelectorAll('span')];
    const lines = (el) => { const r = document.createRange(); r.selectNodeContents(el);
      return new Set([...r.getClientRects()].map((x) => Math.round(x.top))).size; };
    return {
      parts: spans.map((el) => el.textContent),
      lines: spans.map(lines),
      passes: link.getBoundingClientRect().right > td.getBoundingClientRect().right + 1,
      cut: spans.some((el) => el.scrollWidth > el.clientWidth),
      title: link.title,
    };
  });
  return {rows: new Set(parts.map(mid)).size, height: document.querySelector('.nav').offsetHeight,
          emails, sideways: document.documentElement.scrollWidth - window.innerWidth};
}"""


def test_admin_top_bar_is_one_line_and_owner_emails_break_only_at_the_at(visitor):
    """Issue 18: at 1280 px an admin's nine links wrapped the top bar to two lines, and
    an owner's email in All keys broke mid-word; at 390 px both stay usable."""
    page = visitor.page
    visitor.email = (
        f"billing-reconciliation-{visitor.email.split('@')[0]}@subsidiary.example-corporation.com"
    )
    visitor.register()
    visitor.create_key("long owner")
    page.context.clear_cookies()
    visitor.login(ADMIN_EMAIL)
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 800})
        page.goto(f"/admin/keys?q={visitor.email}")
        seen = page.evaluate(ADMIN_LAYOUT)
        assert seen["sideways"] <= 0, seen
        if width == 1280:
            assert seen["rows"] == 1 and seen["height"] <= 64, f"top bar on two lines: {seen}"
        local, domain = visitor.email.split("@")
        assert seen["emails"] == [
            {
                "parts": [local, f"@{domain}"],
                "lines": [1, 1],  # a part never breaks: the one break is before the @
                "passes": False,
                "cut": seen["emails"][0]["cut"],  # a part too wide for the column ends in …
                "title": visitor.email,
            }
        ], seen
        row = page.get_by_role("row", name=re.compile("long owner"))
        expect(row.get_by_role("link", name=visitor.email, exact=True)).to_be_visible()
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="Audit trail")).to_be_visible()


def _focus_is_visible(page) -> bool:
    """The focused element draws an outline or a ring (its own or its container's)."""
    return page.evaluate(
        """() => {
        let el = document.activeElement;
        for (let i = 0; el && i < 3; i++, el = el.parentElement) {
          const s = getComputedStyle(el);
          if (s.outlineStyle !== "none" && parseFloat(s.outlineWidth) > 0) return true;
          if (s.boxShadow && s.boxShadow !== "none" && el === document.activeElement) return true;
        }
        return false;
      }"""
    )


def _tab_to(page, name: str, limit: int = 25) -> None:
    for _ in range(limit):
        page.keyboard.press("Tab")
        label = page.evaluate(
            "() => (document.activeElement.innerText || document.activeElement.value || '').trim()"
        )
        if label == name:
            assert _focus_is_visible(page), f"focus on {name!r} is not visible"
            return
    raise AssertionError(f"{name!r} not reached with {limit} presses of Tab")


def test_keyboard_alone_creates_and_copies_a_key(person):
    page = person.page
    page.goto("/keys")
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    assert _focus_is_visible(page)
    assert skip.bounding_box()["y"] >= 0, "the skip link stays off screen when focused"

    _tab_to(page, "Create key")
    page.keyboard.press("Enter")
    page.wait_for_url("**/keys/new")
    expect(page.get_by_label("Name")).to_be_focused()
    page.keyboard.type("keyboard key")
    page.keyboard.press("Tab")  # first scope
    assert _focus_is_visible(page)
    page.keyboard.press("Space")
    expect(page.get_by_label("keys:read", exact=True)).to_be_checked()
    _tab_to(page, "Create key")
    page.keyboard.press("Enter")
    page.wait_for_selector("#new-key")

    _tab_to(page, "Copy")
    page.keyboard.press("Enter")
    expect(page.locator("#copy-status")).to_contain_text("clipboard")
    assert page.evaluate("navigator.clipboard.readText()") == page.input_value("#new-key")
    _tab_to(page, "I have stored it safely")


def _no_horizontal_scroll(page) -> None:
    overflow = page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"{page.url} scrolls sideways by {overflow}px at 390px"


def test_phone_has_no_sideways_scroll_on_keys_and_the_once_only_page(phone):
    page = phone.page
    _no_horizontal_scroll(page)  # empty keys page
    for name, scopes, custom in (
        ("billing worker (production, eu-west-1)", ("keys:read", "usage:read"), "orders:read"),
        ("staging", ("keys:write",), "reports.export deploy:run"),
    ):
        phone.create_key(name, scopes=scopes, custom=custom)
        _no_horizontal_scroll(page)
        expect(page.get_by_role("button", name="Copy")).to_be_in_viewport()
    page.goto("/keys")
    _no_horizontal_scroll(page)
    expect(page.get_by_role("link", name="Create key")).to_be_in_viewport()
    page.goto("/keys/new")
    _no_horizontal_scroll(page)
