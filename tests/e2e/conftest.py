"""Browser fixtures: one live server (app/serve.py) and one Debian chromium per session, a
fresh browser context per test that fails the test on any console error or CSP
violation."""

from __future__ import annotations

import os
import re
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from liveserver import CHROMIUM_ARGS, PASSWORD, LiveServer

REQUIRE = os.environ.get("KEYLEDGER_REQUIRE_E2E") == "1"

# Surfaces a CSP violation as a console error, so the console check below sees it
# even where Chromium would only fire the DOM event.
CSP_PROBE = """
document.addEventListener("securitypolicyviolation", (e) => {
  console.error("CSP violation: " + e.violatedDirective + " " + (e.blockedURI || "inline"));
});
"""


@pytest.fixture(scope="session")
def chromium() -> str:
    path = shutil.which("chromium")
    if path:
        return path
    reason = (
        "Debian's chromium is not installed (apt-get install chromium); the browser tests need it"
    )
    if REQUIRE:
        pytest.fail(f"{reason}, and KEYLEDGER_REQUIRE_E2E=1 says they must run")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def live_server(chromium: str) -> Iterator[LiveServer]:
    server = LiveServer()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def browser(chromium: str, live_server: LiveServer) -> Iterator[object]:
    """Depends on the server so that it closes first, before the server stops."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Console:
    """Console errors, page errors and CSP violations seen while a test ran."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self._allowed: list[re.Pattern[str]] = []

    def allow(self, pattern: str) -> None:
        """Expect an error, e.g. the browser's note that a page answered 404 on purpose."""
        self._allowed.append(re.compile(pattern))

    def on_message(self, msg) -> None:
        if msg.type == "error":
            self.errors.append(f"console: {msg.text} ({msg.location.get('url', '')})")

    def on_page_error(self, exc) -> None:
        self.errors.append(f"page error: {exc}")

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(p.search(e) for p in self._allowed)]


class Browser:
    """What a test holds: the page, its console, and the person's email."""

    def __init__(self, server: LiveServer, context, console: Console) -> None:
        self.server = server
        self.context = context
        self.console = console
        self.page = self.new_page()
        self.email = f"e2e-{uuid.uuid4().hex[:10]}@example.com"

    def html(self) -> str:
        """The page's markup once it has settled (after a navigation or a refused one)."""
        page = self.page
        for _ in range(50):
            try:
                page.wait_for_load_state()
                return page.content()
            except Exception as exc:  # the page is still navigating
                if "navigating" not in str(exc):
                    raise
                page.wait_for_timeout(100)
        return page.content()

    def new_page(self):
        page = self.context.new_page()
        page.on("console", self.console.on_message)
        page.on("pageerror", self.console.on_page_error)
        return page

    def register(self) -> None:
        page = self.page
        page.goto("/register")
        page.get_by_label("Email").fill(self.email)
        page.get_by_label("Password", exact=True).fill(PASSWORD)
        page.get_by_label("Repeat password").fill(PASSWORD)
        page.get_by_role("button", name="Create account").click()
        page.wait_for_url("**/keys")

    def login(self, email: str) -> None:
        page = self.page
        page.goto("/login")
        page.get_by_label("Email").fill(email)
        page.get_by_label("Password", exact=True).fill(PASSWORD)
        page.locator("main").get_by_role("button", name="Log in").click()
        page.wait_for_url("**/dashboard")

    def create_key(
        self,
        name: str,
        scopes: tuple[str, ...] = ("keys:read",),
        custom: str = "",
        days: int = 30,
    ) -> str:
        """Fill /keys/new and return the secret shown on the once-only page."""
        page = self.page
        page.goto("/keys/new")
        page.get_by_label("Name").fill(name)
        for scope in scopes:
            page.get_by_label(scope, exact=True).check()
        if custom:
            page.get_by_label("Custom scopes").fill(custom)
        page.get_by_label("Lifetime (days)").fill(str(days))
        page.get_by_role("button", name="Create key").click()
        page.wait_for_selector("#new-key")
        return page.input_value("#new-key")


def _context(browser, server: LiveServer, **kw):
    context = browser.new_context(base_url=server.url, **kw)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    context.add_init_script(CSP_PROBE)
    context.set_default_timeout(10_000)
    return context


# Where a failed browser test leaves a screenshot of each of its pages.
SHOTS = Path(
    os.environ.get("KEYLEDGER_E2E_SHOTS", Path(__file__).resolve().parents[2] / "e2e-failures")
)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.kl_failed = report.failed


def _shoot_if_failed(request: pytest.FixtureRequest, context) -> None:
    if not getattr(request.node, "kl_failed", False):
        return
    SHOTS.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid)[-120:]
    for i, page in enumerate(context.pages):
        try:
            path = SHOTS / f"{name}-{i}.png"
            page.screenshot(path=str(path), full_page=True)
            print(f"screenshot of the failed page: {path}")
        except Exception as exc:  # a crashed page: the failure itself says more
            print(f"no screenshot of page {i}: {exc}")


@pytest.fixture
def visitor(browser, live_server: LiveServer, request: pytest.FixtureRequest) -> Iterator[Browser]:
    """A person at a 1280x800 desktop browser, not logged in."""
    console = Console()
    context = _context(browser, live_server, viewport={"width": 1280, "height": 800})
    person = Browser(live_server, context, console)
    yield person
    _shoot_if_failed(request, context)
    context.close()
    assert person.console.unexpected() == [], "browser console errors / CSP violations"


@pytest.fixture
def person(visitor: Browser) -> Browser:
    """A registered, logged-in person at a desktop browser."""
    visitor.register()
    return visitor


@pytest.fixture
def phone(browser, live_server: LiveServer, request: pytest.FixtureRequest) -> Iterator[Browser]:
    """A registered person on a 390px-wide phone."""
    console = Console()
    context = _context(
        browser,
        live_server,
        viewport={"width": 390, "height": 844},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
    person = Browser(live_server, context, console)
    person.register()
    yield person
    _shoot_if_failed(request, context)
    context.close()
    assert person.console.unexpected() == [], "browser console errors / CSP violations"
