"""The webhook delivery log in a real browser (issue 18): after "Send a test event" the
log shows the delivery's result by itself, no reload, and the endpoint's pages fit a
390 px phone. The server may call a receiver on loopback (WEBHOOK_ALLOW_PRIVATE)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from liveserver import PASSWORD, LiveServer
from playwright.sync_api import expect
from support.receiver import Receiver

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def hook_server(chromium: str) -> Iterator[LiveServer]:
    server = LiveServer({"WEBHOOK_ALLOW_PRIVATE": "true", "WEBHOOK_INTERVAL": "0.5"})
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.mark.parametrize("width", [1280, 390])
def test_a_test_event_shows_up_without_a_reload(browser, hook_server, width):
    receiver = Receiver()
    context = browser.new_context(
        base_url=hook_server.url, viewport={"width": width, "height": 844}
    )
    errors: list[str] = []
    try:
        page = context.new_page()
        page.on("console", lambda m: m.type == "error" and errors.append(m.text))
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto("/register")
        page.get_by_label("Email").fill(f"e2e-{uuid.uuid4().hex[:10]}@example.com")
        page.get_by_label("Password", exact=True).fill(PASSWORD)
        page.get_by_label("Repeat password").fill(PASSWORD)
        page.get_by_role("button", name="Create account").click()
        page.wait_for_url("**/keys")

        page.goto("/account/webhooks")
        page.get_by_label("Endpoint URL").fill(receiver.url)
        page.get_by_role("button", name="Add endpoint").click()
        page.get_by_role("link", name="I have stored it safely").click()
        page.get_by_role("button", name="Send a test event").click()
        log = page.locator("#delivery-log")
        expect(log).to_contain_text("webhook.test")
        # The dispatcher sends it; the page shows the answer without being reloaded.
        expect(log).to_contain_text("HTTP 204", timeout=15_000)
        assert len(receiver.requests) == 1
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        wide = page.evaluate(
            "[...document.querySelectorAll('main *')].filter(e => e.getBoundingClientRect().right"
            " > document.documentElement.clientWidth).slice(-6).map(e => e.tagName + '.' +"
            " e.className + ' ' + Math.round(e.getBoundingClientRect().width) + ' ' +"
            " (e.textContent || '').slice(0, 40))"
        )
        assert overflow <= 0, f"the endpoint page scrolls sideways by {overflow} px: {wide}"
        page.locator("#delivery-log a").first.click()
        expect(page.locator("pre.payload")).to_contain_text('"type": "webhook.test"')
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"the payload page scrolls sideways by {overflow} px"
        assert errors == []
    finally:
        context.close()
        receiver.close()
