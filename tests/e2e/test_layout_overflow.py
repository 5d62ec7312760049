"""Every page a person or an admin uses holds at 390 and 1280 px: the page never scrolls
sideways and no table, pre or code box is wider than its container (issue 18).

The pages carry data of the awkward kind: long names, failed validations with IPs and
paths, a leaked key's banner, webhook deliveries, audit hashes and JSON details.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request

import pytest
from liveserver import ADMIN_EMAIL

pytestmark = pytest.mark.e2e

WIDTHS = (390, 1280)

# Whether the page or a box in it is wider than it may be; names the offenders.
OVERFLOWS = """() => {
  const out = [];
  const doc = document.documentElement;
  if (doc.scrollWidth > window.innerWidth) {
    out.push(`document ${doc.scrollWidth}px > viewport ${window.innerWidth}px`);
  }
  const name = (el) => {
    const cls = typeof el.className === 'string' ? el.className.trim() : '';
    return el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
      (cls ? '.' + cls.split(/\\s+/).join('.') : '');
  };
  for (const el of document.querySelectorAll('main table, main pre, main code, main .table-wrap')) {
    // A chart's data table scrolls inside its own bounded box, by design.
    if (!el.checkVisibility() || el.closest('.chart-table, .chart-foot')) continue;
    const box = el.getBoundingClientRect();
    if (box.width === 0) continue;
    // A box may scroll inside itself (a pre or a chart's data table); it must not
    // be wider than the element that holds it.
    const parent = el.parentElement;
    const room = parent.getBoundingClientRect();
    const scrollsInside = el.scrollWidth > el.clientWidth + 1 && el.tagName !== 'TABLE';
    const wide = Math.round(box.width), roomy = Math.round(room.width);
    if (box.right > room.right + 1 || box.left < room.left - 1
        || box.right > window.innerWidth + 1) {
      out.push(`${name(el)} (${wide}px) overflows ${name(parent)} (${roomy}px)`);
    } else if (scrollsInside && el.matches('.table-wrap')) {
      const need = `${el.scrollWidth}px in ${el.clientWidth}px`;
      out.push(`${name(el)} needs a horizontal scroll (${need})`);
    }
  }
  return out;
}"""


def _post(url: str, body: dict) -> int:
    req = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _check(page, width: int, found: list[str]) -> None:
    page.set_viewport_size({"width": width, "height": 844 if width < 800 else 800})
    page.wait_for_timeout(50)
    for problem in page.evaluate(OVERFLOWS):
        found.append(f"{width}px {page.url}: {problem}")


def _visit(page, paths: list[str], found: list[str]) -> None:
    for path in paths:
        page.goto(path)
        page.wait_for_load_state("networkidle")
        for width in WIDTHS:
            _check(page, width, found)


def test_every_page_holds_at_390_and_1280(visitor):
    page = visitor.page
    server = visitor.server
    visitor.register()
    long_name = "billing-worker-production-eu-west-1-primary-reconciliation-job"
    key = visitor.create_key(long_name, scopes=("keys:read", "usage:read"), custom="orders:read")
    leaked = visitor.create_key("leaked one")
    public_id = key.split(".")[1]
    leaked_id = leaked.split(".")[1]
    validate = f"{server.url}/api/v1/keys/validate"
    for path in ("/v1/orders/2026/12/07/very-long-resource-path-name-for-wrapping", "/v1/x"):
        assert _post(validate, {"key": key, "request": {"method": "GET", "path": path}}) == 200
    _post(validate, {"key": key + "x"})
    assert _post(f"{server.url}/api/v1/keys/report-leak", {"credentials": [leaked]}) == 202

    visitor.console.allow(r"status of 4\d\d")
    page.goto("/account/webhooks")
    page.get_by_label("URL").fill(
        "https://hooks.example.com/keyledger/receiver/with/a/rather/long/path?tenant=acme"
    )
    page.locator("input[name=events]").first.check()
    page.get_by_role("button", name="Add endpoint").click()
    page.wait_for_load_state()
    hook = re.search(r"/account/webhooks/([\w-]+)", page.content())
    hook_paths = [f"/account/webhooks/{hook.group(1)}"] if hook else []

    for _ in range(50):  # the usage recorder flushes every second
        page.goto(f"/keys/{public_id}")
        if "very-long-resource" in page.content():
            break
        page.wait_for_timeout(200)

    found: list[str] = []
    _visit(
        page,
        [
            "/dashboard",
            "/keys",
            "/keys/new",
            f"/keys/{public_id}",
            f"/keys/{leaked_id}",
            "/account",
            "/account/webhooks",
            *hook_paths,
            "/billing",
        ],
        found,
    )

    # On a phone the total row stacks like the others: each figure keeps its label.
    page.goto("/billing")
    page.set_viewport_size({"width": 390, "height": 844})
    total = page.evaluate(
        """() => {
          const td = document.querySelector('tfoot [data-billing-total]');
          const table = td.closest('table').getBoundingClientRect();
          return {label: getComputedStyle(td, '::before').content,
                  share: td.getBoundingClientRect().width / table.width};
        }"""
    )
    assert "Amount" in total["label"] and total["share"] > 0.8, (
        f"the billing total does not stack into a labelled row at 390 px: {total}"
    )

    page.context.clear_cookies()
    visitor.login(ADMIN_EMAIL)
    page.goto("/admin/audit")
    event = re.search(r'href="(/admin/audit/\d+)"', page.content()).group(1)
    page.goto("/admin/users")
    user = re.search(r'href="(/admin/users/\d+)"', page.content()).group(1)
    _visit(
        page,
        [
            "/admin/",
            "/admin/users",
            user,
            "/admin/keys",
            f"/admin/keys/{public_id}/limit",
            "/admin/security",
            "/admin/billing",
            "/admin/audit",
            event,
            "/admin/two-factor",
        ],
        found,
    )
    assert found == [], "\n".join(found)
