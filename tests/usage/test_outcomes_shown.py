"""Each validation outcome reads the same on the owner's pages, the admin's charts and
the API (app/outcomes.py): the drifts of issue 20 stay fixed."""

from __future__ import annotations

import html
import re

import pytest
from flask import Flask
from support.usage import Key
from support.web import Portal

from app import outcomes
from app.extensions import db
from app.keys import policies
from app.models import ApiKey
from app.usage import recorder

VALIDATE = "/api/v1/keys/validate"


def _page_text(portal: Portal, url: str) -> str:
    resp = portal.client.get(url)
    assert resp.status_code == 200
    return html.unescape(re.sub(r"<[^>]+>", " ", resp.get_data(as_text=True)))


def _allow_only(app: Flask, key: Key, network: str) -> None:
    with app.app_context():
        row = db.session.get(ApiKey, key.id)
        policies.set_policies(
            db.session, row, ip_allowlist=[network], actor=row.owner, actor_ip=None
        )


def test_an_allowlist_refusal_is_explained_once_in_words(
    app: Flask, user: Portal, key: Key
) -> None:
    _allow_only(app, key, "203.0.113.0/24")
    refused = app.test_client().post(
        VALIDATE, json={"key": key.plaintext, "request": {"client_ip": "198.51.100.9"}}
    )
    expected = outcomes.OUTCOMES["ip_not_allowed"]
    assert (refused.status_code, refused.json["message"]) == (expected.status, expected.message)
    recorder(app).flush()

    dashboard = _page_text(user, "/dashboard")
    assert "ip_not_allowed ip_not_allowed" not in " ".join(dashboard.split())
    assert expected.owner_text in dashboard
    assert expected.owner_text in _page_text(user, f"/keys/{key.public_id}")


def test_a_key_with_its_own_limit_is_not_said_to_be_over_the_tier_limit(
    app: Flask, user: Portal, admin: Portal, key: Key
) -> None:
    saved = admin.submit(f"/admin/keys/{key.public_id}/limit", {"rate_limit": "2"})
    assert saved.status_code == 302
    api = app.test_client()
    statuses = [api.post(VALIDATE, json={"key": key.plaintext}).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    recorder(app).flush()

    for page in ("/dashboard", f"/keys/{key.public_id}"):
        text = _page_text(user, page)
        assert "tier's rate limit" not in text.replace("\u2019", "'")
        assert outcomes.OUTCOMES["rate_limited"].owner_text in text


def test_a_rate_limit_event_without_an_error_detail_is_not_unknown(
    app: Flask, user: Portal, key: Key
) -> None:
    # What `flask demo seed` wrote for a throttled minute: the action says it all.
    recorder(app).audit(
        "key.rate_limited",
        actor=f"key:{key.public_id}",
        actor_ip="203.0.113.7",
        target=f"key:{key.public_id}",
        outcome="denied",
        details={"limit": "key", "recorded": "first per key (or IP) and minute"},
    )
    recorder(app).flush()
    text = _page_text(user, "/dashboard")
    assert "unknown" not in text
    assert outcomes.OUTCOMES["rate_limited"].owner_text in text


def test_the_admin_failures_chart_names_every_audited_reason(
    app: Flask, user: Portal, admin: Portal, key: Key
) -> None:
    _allow_only(app, key, "203.0.113.0/24")
    api = app.test_client()
    body = {"key": key.plaintext, "request": {"client_ip": "198.51.100.9"}}
    assert api.post(VALIDATE, json=body).status_code == 403
    recorder(app).flush()

    chart = admin.client.get("/admin/charts/failures.json?days=7").get_json()
    series = {s["name"]: s for s in chart["series"]}
    assert "other" not in series
    assert sum(series["ip_not_allowed"]["data"]) == 1
    for code in outcomes.AUDITED_FAILURES:  # legend and colour from the catalogue
        assert series[code]["label"] == outcomes.OUTCOMES[code].admin_label
        assert series[code]["colour"] == outcomes.OUTCOMES[code].colour


@pytest.mark.parametrize("url", ["/dashboard/usage.json", "/keys/{key}/usage.json"])
def test_usage_charts_take_their_legend_and_colours_from_the_answer(
    user: Portal, key: Key, url: str
) -> None:
    body = user.client.get(url.format(key=key.public_id)).get_json()
    assert [c["name"] for c in body["classes"]] == list(outcomes.CHART_CLASSES)
    assert {c["name"]: c["colour"] for c in body["classes"]} == {
        c.name: c.colour for c in outcomes.CHART_CLASSES.values()
    }


def test_the_chart_scripts_keep_no_palette_of_their_own() -> None:
    from pathlib import Path

    js = Path(__file__).resolve().parents[2] / "static" / "js"
    colours = {o.colour for o in outcomes.OUTCOMES.values()}
    colours |= {c.colour for c in outcomes.CHART_CLASSES.values()}
    for name in ("usage-chart.js", "admin-charts.js"):
        source = (js / name).read_text().lower()
        # admin-charts.js may tell apart series that carry no colour, nothing more.
        source = re.sub(r"const fallback = \[[^\]]*\];", "", source)
        assert not [c for c in colours if c in source], name
