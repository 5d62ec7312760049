"""The dashboard and the key page's charts in a real browser, fed by real validations."""

from __future__ import annotations

import csv
import io
import json
import re
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e

SERIES = "[data-chart=series] canvas"


def validate(server, secret: str, path: str) -> int:
    req = urllib.request.Request(
        f"{server.url}/api/v1/keys/validate",
        data=json.dumps({"key": secret, "request": {"method": "GET", "path": path}}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status


def seed(person, a: int, b: int) -> tuple[str, str]:
    """Two keys and a + b validations through the live server; wait for the flush."""
    first = person.create_key("orders svc")
    second = person.create_key("search svc")
    for _ in range(a):
        assert validate(person.server, first, "/v1/orders") == 200
    for _ in range(b):
        assert validate(person.server, second, "/v1/search") == 200
    page = person.page
    for _ in range(100):  # the recorder flushes every second
        data = page.request.get("/dashboard/usage.json?range=hour").json()
        if data["total"]["count"] == a + b:
            break
        page.wait_for_timeout(100)
    assert data["total"]["count"] == a + b
    return first.split(".")[1], second.split(".")[1]


def ready(page, selector: str = "[data-usage]") -> None:
    page.wait_for_function("s => document.querySelector(s).dataset.state === 'ready'", arg=selector)


def chart(page, selector: str) -> dict:
    """What Chart.js drew: the labels and, per dataset, its points."""
    return page.evaluate(
        """s => {
            const c = window.Chart.getChart(document.querySelector(s));
            return { labels: c.data.labels,
                     sets: c.data.datasets.map(d => (
                         { label: d.label, type: d.type || c.config.type, data: d.data })) };
        }""",
        SERIES if selector == "series" else selector,
    )


def bar_total(drawn: dict) -> int:
    return sum(v or 0 for s in drawn["sets"] if s["type"] == "bar" for v in s["data"])


def test_dashboard_draws_the_seeded_traffic_and_the_range_picker_changes_it(person):
    seed(person, 5, 2)
    page = person.page
    page.goto("/dashboard")
    ready(page)
    drawn = chart(page, "series")
    assert len(drawn["labels"]) == 24  # last 24 hours by hour
    assert all(len(s["data"]) == 24 for s in drawn["sets"])
    assert bar_total(drawn) == 7
    assert drawn["sets"][0]["data"][-1] == 7  # all 2xx, this hour
    # 24 hours of ticks in UTC and 24-hour time, as every page writes them: no AM/PM.
    assert not [t for t in drawn["labels"] if "AM" in t or "PM" in t], drawn["labels"]
    top = chart(page, "[data-chart=keys] canvas")
    assert top["labels"] == ["orders svc", "search svc"]
    expect(page.locator("[data-usage-summary]")).to_contain_text("7 requests")

    for name, points in (("Last hour", 60), ("Last 7 days", 168), ("Last 30 days", 30)):
        page.get_by_role("button", name=name).click()
        ready(page)
        drawn = chart(page, "series")
        assert len(drawn["labels"]) == points, name
        assert bar_total(drawn) == 7, name
        if name == "Last hour":
            assert all(re.fullmatch(r"\d{2}:\d{2}", t) for t in drawn["labels"]), drawn["labels"]
        expect(page.get_by_role("button", name=name)).to_have_attribute("aria-pressed", "true")

    # A custom range of the last three hours: by minute.
    now = datetime.now(UTC)
    page.get_by_text("Custom range").first.click()
    page.get_by_label("From (UTC)").fill((now - timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M"))
    page.get_by_label("To (UTC)").fill((now + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M"))
    page.get_by_role("button", name="Show").click()
    ready(page)
    drawn = chart(page, "series")
    assert 180 <= len(drawn["labels"]) <= 182 and bar_total(drawn) == 7

    # The accessible table and the CSV follow the chosen range.
    figure = page.locator("[data-chart=series]")
    figure.get_by_text("Data table").click()
    assert figure.locator("tbody tr").count() == len(drawn["labels"])
    download = figure.get_by_role("link", name="Download CSV")
    href = download.get_attribute("href")
    assert "range=custom" in href
    # A button with a border and an icon, not a line of text beside the table.
    border = download.evaluate("(a) => getComputedStyle(a).borderTopColor")
    assert border != "rgba(0, 0, 0, 0)" and download.locator("svg").count() == 1
    body = page.request.get(href).text()
    rows = list(csv.DictReader(io.StringIO(body)))
    assert len(rows) == len(drawn["labels"]) and sum(int(r["requests"]) for r in rows) == 7


def test_key_page_shows_latency_peak_top_lists_and_the_request_log(person):
    orders, _ = seed(person, 4, 1)
    page = person.page
    page.goto(f"/keys/{orders}")
    ready(page)
    expect(page.locator('[data-stat="count"]')).to_have_text("4")
    expect(page.locator('[data-stat="peak"]')).to_have_text("4 / 60")
    assert page.locator('[data-stat="p95"]').inner_text().endswith("ms")
    endpoints = chart(page, "[data-chart=endpoints] canvas")
    assert endpoints["labels"] == ["/v1/orders"]
    assert sum(endpoints["sets"][0]["data"]) == 4
    assert len(chart(page, "series")["labels"]) == 24
    log = page.locator("#request-log tbody tr")
    expect(log).to_have_count(4)
    page.get_by_label("Status").select_option("5xx")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#request-log")).to_contain_text("No requests with status 5xx")


def test_empty_dashboard_and_key_page_say_what_to_do_next(person):
    page = person.page
    page.goto("/dashboard")
    expect(page.get_by_role("link", name="Create your first key")).to_be_visible()
    secret = person.create_key("quiet")
    page.goto(f"/keys/{secret.split('.')[1]}")
    ready(page)
    expect(page.locator("[data-usage-empty]")).to_be_visible()
    expect(page.locator("[data-usage-empty]")).to_contain_text("POST /api/v1/keys/validate")


def test_key_page_is_readable_on_a_phone(phone):
    secret = phone.create_key("pocket")
    validate(phone.server, secret, "/v1/pocket")
    page = phone.page
    public_id = secret.split(".")[1]
    for _ in range(50):
        if page.request.get(f"/keys/{public_id}/usage.json").json()["total"]["count"]:
            break
        page.wait_for_timeout(100)
    page.goto(f"/keys/{public_id}")
    ready(page)
    box = page.locator("[data-chart=series] .chart-box").bounding_box()
    assert box["height"] >= 240, box
    # Nothing wider than the screen, so no column hides behind an unmarked scroll.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    for table in page.locator("main table").all():
        wrap = table.evaluate("t => [t.scrollWidth, t.parentElement.clientWidth]")
        assert wrap[0] <= wrap[1], wrap
