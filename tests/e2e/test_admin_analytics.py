"""The admin overview and security view draw their charts from the JSON endpoints;
an admin follows a security figure into the filtered audit browser; the billing
pages download a CSV whose total is the page's. Console errors and CSP violations
fail every test (conftest)."""

from __future__ import annotations

import csv
import io
import re
from decimal import Decimal
from pathlib import Path

import pytest
from liveserver import ADMIN_EMAIL
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e

DEMO_PASSWORD = "keyledger demo password"


@pytest.fixture(scope="module")
def seeded(live_server) -> None:
    """A week of demo traffic on the live server's database, through the recorder."""
    live_server.flask(
        "demo", "seed", "--users", "4", "--keys", "12", "--events", "3000", "--days", "7"
    )


def _charts_settle(page, count: int) -> None:
    """Every chart section has either drawn or said there is nothing to show."""
    page.wait_for_function(
        """(n) => [...document.querySelectorAll('[data-chart]')].filter(
             (s) => s.dataset.drawn === 'true' || s.querySelector('[data-chart-box]').hidden
           ).length === n""",
        arg=count,
    )


def test_overview_draws_every_chart_with_its_data_table(visitor, seeded) -> None:
    page = visitor.page
    visitor.login(ADMIN_EMAIL)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Admin").click()
    expect(page.get_by_role("heading", name="Overview", exact=True)).to_be_visible()
    _charts_settle(page, 6)
    requests = page.locator('[data-chart="requests"]')
    expect(requests).to_have_attribute("data-drawn", "true")
    assert requests.get_attribute("data-points") == "30"
    requests.get_by_text("Data table").click()
    expect(requests.locator("tbody tr")).to_have_count(30)
    # The page's total is the sum of the chart's table.
    total = int(page.locator('[data-total="requests"]').inner_text().replace(",", ""))
    table = 0
    for row in requests.locator("tbody tr").all():
        table += sum(int(c.replace(",", "")) for c in row.locator("td.num").all_inner_texts())
    assert table == total > 0
    with page.expect_download() as download:
        requests.get_by_role("link", name="Download CSV").click()
    rows = list(csv.reader(io.StringIO(Path(download.value.path()).read_text("utf-8"))))
    assert rows[0][:3] == ["label", "2xx", "3xx"] and len(rows) == 31


def _bars(page, name: str) -> list[float]:
    """The drawn length in pixels of each bar of an hbar chart."""
    return page.evaluate(
        """(name) => window.Chart.getChart(document.querySelector(
             `[data-chart="${name}"] canvas`)).getDatasetMeta(0).data.map(
             (el) => Math.abs(el.x - el.base))""",
        name,
    )


def test_top_keys_switch_to_a_log_scale_where_small_keys_stay_visible(visitor, seeded) -> None:
    page = visitor.page
    visitor.login(ADMIN_EMAIL)
    page.goto("/admin/")
    _charts_settle(page, 6)
    top = page.locator('[data-chart="top_keys"]')
    log = top.get_by_role("button", name="Log scale")
    expect(log).to_be_visible()
    if log.get_attribute("aria-pressed") == "true":  # a wide spread starts on log
        log.click()
    expect(log).to_have_attribute("aria-pressed", "false")
    linear = _bars(page, "top_keys")
    log.click()
    expect(log).to_have_attribute("aria-pressed", "true")
    expect(top.locator("[data-chart-status]")).to_contain_text("Log scale")
    logged = _bars(page, "top_keys")
    assert len(linear) == len(logged) > 1
    # The smallest bar takes a larger share of the largest on the log scale.
    assert logged[-1] / logged[0] > linear[-1] / linear[0]
    # Download CSV is a button, not a line of text.
    csv_link = top.get_by_role("link", name="Download CSV")
    style = csv_link.evaluate(
        "(a) => { const s = getComputedStyle(a); return [s.borderTopWidth, s.textDecorationLine]; }"
    )
    assert style == ["1px", "none"] and csv_link.bounding_box()["height"] >= 32
    assert csv_link.locator("svg").count() == 1  # the download icon


def test_the_incidents_chart_draws_refusals_on_their_own_axis(visitor, seeded) -> None:
    page = visitor.page
    visitor.login(ADMIN_EMAIL)
    page.goto("/admin/security?days=30")
    _charts_settle(page, 4)
    expect(page.locator('[data-chart="incidents"]')).to_have_attribute("data-drawn", "true")
    # Each line's highest point, as a share of the plot's height, and its axis.
    peaks = page.evaluate(
        """() => {
          const chart = window.Chart.getChart(document.querySelector(
            '[data-chart="incidents"] canvas'));
          const area = chart.chartArea;
          return chart.data.datasets.map((ds, d) => ({
            label: ds.label, axis: ds.yAxisID, max: Math.max(...ds.data),
            height: Math.max(...chart.getDatasetMeta(d).data.map(
              (el) => (area.bottom - el.y) / (area.bottom - area.top))),
          }));
        }"""
    )
    right = [p for p in peaks if p["axis"] == "y2"]
    assert [p["label"] for p in right] == ["rate-limit refusals (per key and minute)"]
    left = max((p for p in peaks if p["axis"] == "y"), key=lambda p: p["max"])
    assert left["max"] > 0  # the demo has failed logins
    assert left["height"] > 0.5  # drawn on its own scale, not flat under the refusals
    expect(
        page.locator('[data-chart="incidents"]').get_by_role("button", name="Log scale")
    ).to_be_hidden()


def test_admin_follows_a_security_figure_into_the_filtered_audit_browser(visitor, seeded) -> None:
    page = visitor.page
    visitor.login(ADMIN_EMAIL)
    page.goto("/admin/security?days=7")
    expect(page.get_by_role("heading", name="Security", exact=True)).to_be_visible()
    _charts_settle(page, 4)
    expect(page.locator('[data-chart="failures"]')).to_have_attribute("data-drawn", "true")

    figure = page.locator('[data-figure="Failed validations"]')
    counted = int(figure.inner_text().replace(",", ""))
    assert counted > 0
    figure.click()
    page.wait_for_url(re.compile(r"/admin/audit\?.*action=key\.validation_failed"))
    expect(page.get_by_role("heading", name="Audit trail", exact=True)).to_be_visible()
    expect(page.get_by_label("Action")).to_have_value("key.validation_failed")
    actions = page.locator("table.audit tbody td:nth-child(3)").all_inner_texts()
    assert actions and set(actions) == {"key.validation_failed"}
    assert len(actions) == min(counted, 50)  # the first page of what the figure counts

    # A bar's data-table link: the noisiest source IP, filtered by IP.
    page.go_back()
    ips = page.locator('[data-chart="failure_ips"]')
    ips.get_by_text("Data table").click()
    first = ips.locator("tbody tr").first
    ip = first.locator("td.name").inner_text()
    n = int(first.locator("td.num").inner_text().replace(",", ""))
    first.get_by_role("link").click()
    page.wait_for_url(re.compile(r"actor_ip="))
    expect(page.get_by_label("IP")).to_have_value(ip)
    rows = page.locator("table.audit tbody tr")
    assert rows.count() == min(n, 50)
    assert set(page.locator("table.audit tbody td:nth-child(6)").all_inner_texts()) == {ip}


def test_a_bar_of_a_day_opens_that_days_events_and_the_range_survives_the_next_filter(
    visitor, seeded
) -> None:
    page = visitor.page
    visitor.login(ADMIN_EMAIL)
    page.goto("/admin/security?days=7")
    _charts_settle(page, 4)
    failures = page.locator('[data-chart="failures"]')
    expect(failures).to_have_attribute("data-drawn", "true")
    # The tallest segment of the chart: where a person would click.
    bar = page.evaluate(
        """async () => {
          const section = document.querySelector('[data-chart="failures"]');
          const json = await (await fetch(section.dataset.chartUrl)).json();
          const chart = window.Chart.getChart(section.querySelector('canvas'));
          let best = null;
          chart.data.datasets.forEach((ds, d) => ds.data.forEach((v, i) => {
            if (!best || v > best.v) best = {v, d, i};
          }));
          const el = chart.getDatasetMeta(best.d).data[best.i];
          return {v: best.v, reason: json.series[best.d].name,
                  day: chart.data.labels[best.i], x: el.x, y: (el.y + el.base) / 2};
        }"""
    )
    assert bar["v"] > 0
    failures.locator("canvas").click(position={"x": bar["x"], "y": bar["y"]})
    page.wait_for_url(re.compile(r"/admin/audit\?.*since="))
    expect(page.get_by_label("From (UTC)")).to_have_value(f"{bar['day']}T00:00")
    expect(page.get_by_label("Reason")).to_have_value(bar["reason"])
    expect(page.locator("[data-range]")).to_contain_text(f"from {bar['day']} 00:00")
    rows = page.locator("table.audit tbody tr")
    assert rows.count() == min(bar["v"], 50)
    # The next filter keeps the day: hide nothing new, just filter again by sensitivity.
    page.get_by_label("Sensitivity").select_option("")
    page.get_by_role("button", name="Filter", exact=True).click()
    page.wait_for_load_state()
    assert f"since={bar['day']}T00%3A00" in page.url
    expect(page.get_by_label("From (UTC)")).to_have_value(f"{bar['day']}T00:00")
    assert page.locator("table.audit tbody tr").count() == min(bar["v"], 50)


def _money(text: str) -> Decimal:
    return Decimal(text.split()[0])


def test_billing_pages_download_a_csv_whose_total_matches_the_page(visitor, seeded) -> None:
    page = visitor.page
    visitor.login(ADMIN_EMAIL)
    page.goto("/admin/billing")
    month = page.get_by_label("Month", exact=True).input_value()
    shown = _money(page.locator("[data-billing-total]").inner_text())
    billable = int(page.locator("[data-billing-billable]").inner_text().replace(",", ""))
    assert billable > 0
    with page.expect_download() as download:
        page.get_by_role("link", name="Download CSV").click()
    assert download.value.suggested_filename == f"keyledger-billing-{month}.csv"
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text("utf-8"))))
    # The money is on the accounts' plan lines; key lines are the breakdown, without money.
    plans = [r for r in rows if r["line"] == "plan"]
    assert plans and all(r["amount"] == "" for r in rows if r["line"] == "key")
    assert sum(Decimal(r["amount"]) for r in plans) == shown
    assert sum(int(r["billable"]) for r in plans) == billable

    # The same as a demo account on its own /billing page.
    page.context.clear_cookies()
    page.goto("/login")
    page.get_by_label("Email").fill("demo-1@example.com")
    page.get_by_label("Password", exact=True).fill(DEMO_PASSWORD)
    page.locator("main").get_by_role("button", name="Log in").click()
    page.wait_for_url("**/dashboard")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Billing").click()
    expect(page.get_by_role("heading", name="Billing", exact=True)).to_be_visible()
    with page.expect_download() as download:
        page.get_by_role("link", name=re.compile(r"Download CSV \(")).click()
    body = Path(download.value.path()).read_text("utf-8")
    rows = list(csv.DictReader(io.StringIO(body)))
    assert {r["email"] for r in rows} <= {"demo-1@example.com"}
    if rows:
        total = _money(page.locator("[data-billing-total]").inner_text())
        assert sum(Decimal(r["amount"]) for r in rows if r["line"] == "plan") == total
    else:
        expect(page.locator("main")).to_contain_text("No billable use this month yet")


def test_the_audit_table_fits_a_1280px_window(visitor, seeded) -> None:
    page = visitor.page
    visitor.login(ADMIN_EMAIL)
    page.goto("/admin/audit?action=key.validation_failed")
    expect(page.locator("table.audit tbody tr").first).to_be_visible()
    overflow = page.evaluate(
        """() => { const w = document.querySelector('table.audit').closest('.table-wrap');
                   return w.scrollWidth - w.clientWidth; }"""
    )
    assert overflow <= 0
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280


def test_the_cloudevents_export_shows_its_progress_then_downloads(visitor, seeded) -> None:
    page = visitor.page
    visitor.login(ADMIN_EMAIL)
    page.goto("/admin/billing")
    box = page.locator("#export-progress")
    expect(box).to_be_hidden()
    with page.expect_download() as download:
        page.get_by_role("link", name="Download CloudEvents (JSON lines)").click()
        expect(box).to_be_visible()  # shown from the click on, while the export streams
    month = page.get_by_label("Month", exact=True).input_value()
    assert download.value.suggested_filename == f"keyledger-billing-{month}.jsonl"
    lines = Path(download.value.path()).read_text("utf-8").splitlines()
    status = page.get_by_role("status").filter(has_text="events exported")
    expect(status).to_have_text(f"Done: {len(lines):,} events exported.")
    bar = box.locator("progress")
    assert bar.evaluate("(p) => [p.value, p.max]") == [max(len(lines), 1)] * 2
