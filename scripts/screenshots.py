"""Regenerate docs/img from a live local server with demo data.

    .venv/bin/python scripts/screenshots.py            # docs/img/: the README's pictures,
                                                       # and every page at 1280 and 390 px
                                                       # in docs/img/pages/
    .venv/bin/python scripts/screenshots.py --all DIR  # every page: desktop, 390px mobile, dark

Needs Debian's chromium (`apt-get install chromium`); the server runs on a throw-away
SQLite file, so nothing here touches instance/.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import urllib.request
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

from liveserver import ADMIN_EMAIL, CHROMIUM_ARGS, PASSWORD, LiveServer  # noqa: E402

DEMO_EMAIL = "maya@acme.example"


def register(page: Page, base: str, email: str) -> None:
    page.goto(f"{base}/register")
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.fill("#confirm", PASSWORD)
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_url("**/keys")


def login(page: Page, base: str, email: str) -> None:
    page.goto(f"{base}/login")
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.click("main button[type=submit], main input[type=submit]")
    page.wait_for_url("**/dashboard")


def create_key(
    page: Page, base: str, name: str, scopes: list[str], custom: str = "", days: int = 90
) -> str:
    """Fill /keys/new as a person would; return the secret from the once-only page."""
    page.goto(f"{base}/keys/new")
    page.fill("#name", name)
    for scope in scopes:
        page.check(f"input[name=scopes][value='{scope}']")
    page.fill("#custom_scopes", custom)
    page.fill("#lifetime_days", str(days))
    page.click("main form [type=submit]")
    page.wait_for_selector("#new-key")
    return page.input_value("#new-key")


def validate(base: str, key: str) -> None:
    req = urllib.request.Request(
        f"{base}/api/v1/keys/validate",
        data=json.dumps({"key": key}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        resp.read()


def key_id(secret: str) -> str:
    return secret.split(".")[1]


def demo_keys(page: Page, base: str) -> dict[str, str]:
    """A few keys in every state: active and used, expiring, revoked, rotated/expired."""
    ids: dict[str, str] = {}
    k = create_key(page, base, "billing worker (prod)", ["keys:read", "usage:read"], "orders:read")
    validate(base, k)
    ids["billing"] = key_id(k)
    k = create_key(page, base, "staging deploy", ["keys:write"], days=5)
    ids["staging"] = key_id(k)
    k = create_key(page, base, "old laptop script", ["keys:read"], days=30)
    ids["laptop"] = key_id(k)
    page.goto(f"{base}/keys/{ids['laptop']}")
    page.check("#confirm")
    page.click("form[action$='/revoke'] [type=submit]")
    page.wait_for_url(f"**/keys/{ids['laptop']}")
    k = create_key(page, base, "ci pipeline", ["keys:read", "keys:write"], "deploy:run", days=180)
    page.goto(f"{base}/keys/{key_id(k)}")
    page.select_option("#grace", "now")
    page.click("form[action$='/rotate'] [type=submit]")
    page.wait_for_selector("#new-key")
    ids["ci"] = key_id(page.input_value("#new-key"))
    validate(base, page.input_value("#new-key"))
    return ids


def seed_history(server: LiveServer, email: str, events: int = 6000) -> None:
    """A week of plausible traffic for the user's keys, through the usage recorder.

    Validations through the server can only happen now; the charts want history, so
    the events go through the same recorder the API uses, with past times.
    """
    import random
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import select

    from app import create_app
    from app.extensions import db
    from app.models import ApiKey, User
    from app.usage import UsageEvent, recorder

    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": server.env["DATABASE_URL"],
            "INSTANCE_PATH": server.env["KEYLEDGER_INSTANCE"],
            "SECRET_KEY": server.env["SECRET_KEY"],
            "KEY_PEPPER": server.env["KEY_PEPPER"],
            "RATELIMIT_STORAGE_URI": "memory://",
            "USAGE_MODE": "manual",
        }
    )
    rng = random.Random(10)
    now = datetime.now(UTC)
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == email))
        keys = db.session.scalars(
            select(ApiKey).where(ApiKey.user_id == user.id, ApiKey.revoked_at.is_(None))
        ).all()
        weights = [5, 2, 1, 1, 1][: len(keys)]
        paths = ["/v1/orders", "/v1/orders/{id}", "/v1/invoices", "/v1/customers", "/v1/refunds"]
        ips = ["203.0.113.10", "203.0.113.11", "198.51.100.23", "192.0.2.200", "2001:db8::7"]
        rec = recorder(app)
        for _ in range(events):
            key = rng.choices(keys, weights)[0]
            ago = timedelta(minutes=rng.triangular(0, 7 * 24 * 60, 0))
            roll = rng.random()
            status = (
                200
                if roll < 0.86
                else 201
                if roll < 0.9
                else 404
                if roll < 0.93
                else 401
                if roll < 0.95
                else 429
                if roll < 0.98
                else 503
            )
            rec.record(
                UsageEvent(
                    key_id=key.id,
                    owner_id=user.id,
                    endpoint=rng.choices(paths, [6, 3, 2, 2, 1])[0],
                    method=rng.choice(["GET", "GET", "POST"]),
                    status=status,
                    response_ms=rng.lognormvariate(3.0, 0.6),
                    client_ip=rng.choices(ips, [6, 4, 2, 1, 1])[0],
                    at=now - ago,
                )
            )
        rec.flush()
        db.engine.dispose()


def readme_shots(server: LiveServer, page: Page, out: Path) -> None:
    base = server.url
    register(page, base, DEMO_EMAIL)
    server.flask("users", "set-tier", DEMO_EMAIL, "premium")
    ids = demo_keys(page, base)
    create_key(page, base, "analytics export", ["usage:read"], "reports.export", days=180)
    page.screenshot(path=str(out / "key-once.png"))
    page.goto(f"{base}/keys")
    page.screenshot(path=str(out / "keys.png"))
    seed_history(server, DEMO_EMAIL)
    page.goto(f"{base}/dashboard")
    page.get_by_role("button", name="Last 7 days").click()
    page.wait_for_function("() => document.querySelector('[data-usage]').dataset.state === 'ready'")
    page.screenshot(path=str(out / "dashboard.png"), full_page=True)
    page.goto(f"{base}/keys/{ids['billing']}")
    page.wait_for_function("() => document.querySelector('[data-usage]').dataset.state === 'ready'")
    unstick(page)
    page.locator("#usage").screenshot(path=str(out / "key-usage.png"))
    account_shot(page, base, out / "account.png")
    admin_user_shot(page, base, out / "admin-user.png")
    admin_shots(server, page, out)


def unstick(page: Page) -> None:
    """A picture of one section: the sticky header would be drawn across it."""
    page.evaluate("document.querySelector('.topbar').style.position = 'static'")


PHONE_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
)


def account_shot(page: Page, base: str, path: Path) -> None:
    """/account with a second session (a phone) beside this one."""
    assert page.context.browser is not None
    phone = page.context.browser.new_context(user_agent=PHONE_UA)
    login(phone.new_page(), base, DEMO_EMAIL)
    phone.close()
    page.goto(f"{base}/account")
    page.screenshot(path=str(path), full_page=True)


def admin_user_shot(page: Page, base: str, path: Path) -> None:
    """The admin's page of the demo user: their keys, one revoked by the admin with a reason."""
    page.context.clear_cookies()
    login(page, base, ADMIN_EMAIL)
    page.goto(f"{base}/admin/users?q={DEMO_EMAIL}")
    page.get_by_role("link", name=DEMO_EMAIL).click()
    row = page.locator("tr", has_text="staging deploy")
    row.locator("input[name=reason]").fill("Leaked in a public CI log")
    row.locator("button[type=submit]").click()
    page.wait_for_selector(".flash")
    page.screenshot(path=str(path), full_page=True)


def admin_shots(server: LiveServer, page: Page, out: Path) -> None:
    """The admin overview and security view over a month of demo traffic."""
    base = server.url
    server.flask("demo", "seed", "--users", "25", "--keys", "120", "--events", "40000")
    page.context.clear_cookies()
    login(page, base, ADMIN_EMAIL)
    for path, name in (("/admin/", "admin-overview.png"), ("/admin/security", "security.png")):
        page.goto(f"{base}{path}")
        page.wait_for_function(
            "() => [...document.querySelectorAll('[data-chart]')].every("
            "(s) => s.dataset.drawn === 'true' || s.querySelector('[data-chart-box]').hidden)"
        )
        page.screenshot(path=str(out / name), full_page=True)


def all_shots(server: LiveServer, page: Page, out: Path, tag: str) -> None:
    """Every page a person or an admin sees, for reviewing the look (tag names the files)."""
    base = server.url

    def shot(name: str) -> None:
        # From the top: a focused field scrolls the page, and the sticky header would
        # then be drawn in the middle of a full-page picture.
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(out / f"{tag}-{name}.png"), full_page=True)

    page.goto(f"{base}/login")
    shot("login")
    page.goto(f"{base}/register")
    shot("register")
    page.click("main form [type=submit]")
    shot("register-errors")
    email = f"{tag}@acme.example"
    register(page, base, email)
    shot("keys-empty")
    page.goto(f"{base}/keys/new")
    shot("new")
    page.fill("#custom_scopes", "Bad Scope!")
    page.fill("#lifetime_days", "9999")
    page.click("main form [type=submit]")
    shot("new-errors")
    server.flask("users", "set-tier", email, "premium")
    ids = demo_keys(page, base)
    create_key(page, base, "analytics export", ["usage:read"], "reports.export", days=180)
    shot("created")
    page.goto(f"{base}/keys")
    shot("keys")
    seed_history(server, email, events=2000)
    page.goto(f"{base}/dashboard")
    page.wait_for_function("() => document.querySelector('[data-usage]').dataset.state === 'ready'")
    shot("dashboard")
    page.goto(f"{base}/keys/{ids['billing']}")
    page.wait_for_function("() => document.querySelector('[data-usage]').dataset.state === 'ready'")
    shot("key-active")
    unstick(page)
    page.locator("#usage").screenshot(path=str(out / f"{tag}-key-usage.png"))
    # A refused policy: every error beside its field, what was typed kept.
    page.fill("#ip_allowlist", "203.0.113.0/24\n10.0.0.0/99")
    page.fill("#meta", '{"customer": "c-7",}')
    page.fill("#rate_limit", "9999")
    page.click("#policies [type=submit]")
    page.wait_for_load_state()
    shot("key-policy-errors")
    page.goto(f"{base}/keys/{ids['laptop']}")
    shot("key-revoked")
    page.goto(f"{base}/keys?q=ci")
    shot("keys-search")
    page.goto(f"{base}/billing")
    shot("billing")
    page.goto(f"{base}/account")
    shot("account")
    page.goto(f"{base}/account/webhooks")
    page.get_by_label("URL").fill("https://127.0.0.1:8443/keyledger/receiver?tenant=acme")
    page.locator("input[name=events]").first.check()
    page.get_by_role("button", name="Add endpoint").click()
    page.wait_for_load_state()
    shot("webhook-created")
    page.goto(f"{base}/account/webhooks")
    shot("webhooks")
    hook = page.locator("main a[href*='/account/webhooks/']").first
    if hook.count():
        hook.click()
        page.wait_for_load_state()
        shot("webhook")
    page.goto(f"{base}/account/two-factor")
    shot("two-factor")
    page.goto(f"{base}/keys/doesnotexist")
    shot("404")
    page.context.clear_cookies()
    page.goto(f"{base}/login")
    page.fill("#email", email)
    page.fill("#password", "not the password")
    page.locator("main").get_by_role("button", name="Log in", exact=True).click()
    page.wait_for_load_state()
    shot("login-refused")
    login(page, base, ADMIN_EMAIL)
    for path, name in (("/admin/", "admin-overview"), ("/admin/security", "admin-security")):
        page.goto(f"{base}{path}")
        page.wait_for_function(
            "() => [...document.querySelectorAll('[data-chart]')].every("
            "(s) => s.dataset.drawn === 'true' || s.querySelector('[data-chart-box]').hidden)"
        )
        shot(name)
    page.goto(f"{base}/admin/billing")
    shot("admin-billing")
    page.goto(f"{base}/admin/users")
    shot("admin-users")
    page.goto(f"{base}/admin/keys")
    shot("admin-keys")
    page.goto(f"{base}/admin/keys/{ids['billing']}/limit")
    shot("admin-key-limit")
    page.goto(f"{base}/admin/users")
    page.click(f"text={email}")
    shot("admin-user")
    page.goto(f"{base}/admin/two-factor")
    shot("admin-two-factor")
    page.goto(f"{base}/admin/audit")
    shot("admin-audit")
    page.goto(f"{base}/admin/audit?action=key.validation_failed&since={today()}")
    shot("admin-audit-filtered")
    page.goto(f"{base}/admin/audit")
    event = page.locator("table.audit a[href*='/admin/audit/']").first
    if event.count():
        event.click()
        page.wait_for_load_state()
        shot("admin-audit-event")
    page.goto(f"{base}/admin/audit")
    verify = page.get_by_role("button", name="Verify now")
    if verify.count():
        verify.first.click()
        page.wait_for_load_state()
        shot("admin-verify")


def today() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).strftime("%Y-%m-%d")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--all", metavar="DIR", type=Path, help="screenshot every page into DIR")
    args = parser.parse_args()
    chromium = shutil.which("chromium")
    if not chromium:
        sys.exit("chromium is not installed: apt-get install chromium")
    # A webhook endpoint on loopback: the pictures show an endpoint without DNS.
    with LiveServer({"WEBHOOK_ALLOW_PRIVATE": "true"}) as server, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            if args.all:
                args.all.mkdir(parents=True, exist_ok=True)
                for tag, (width, height), scheme in (
                    ("desktop", (1280, 800), "light"),
                    ("mobile", (390, 844), "light"),
                    ("dark", (1280, 800), "dark"),
                ):
                    context = browser.new_context(
                        viewport={"width": width, "height": height}, color_scheme=scheme
                    )
                    all_shots(server, context.new_page(), args.all, tag)
                    context.close()
                print(f"screenshots in {args.all}")
            else:
                out = ROOT / "docs" / "img"
                out.mkdir(parents=True, exist_ok=True)
                context = browser.new_context(
                    viewport={"width": 1280, "height": 800}, color_scheme="light"
                )
                readme_shots(server, context.new_page(), out)
                context.close()
                # Every page at both widths the issue checks layouts at (issue 18).
                pages = out / "pages"
                pages.mkdir(exist_ok=True)
                for old in pages.glob("*.png"):
                    old.unlink()
                for width, height in ((1280, 800), (390, 844)):
                    context = browser.new_context(
                        viewport={"width": width, "height": height}, color_scheme="light"
                    )
                    all_shots(server, context.new_page(), pages, str(width))
                    context.close()
                print(f"wrote the README's screenshots in {out}, every page in {pages}")
        finally:
            browser.close()


if __name__ == "__main__":
    main()
