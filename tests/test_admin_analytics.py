"""/admin overview and /admin/security: chart JSON matches what was recorded, every
figure links to the audit events it counts, and only admins get any of it."""

from __future__ import annotations

import csv
import html as htmllib
import io
import re
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from sqlalchemy import text
from support.rows import audit_events
from support.usage import make_key
from support.web import PASSWORD, Portal

from app.admin.analytics import OVERVIEW_CHARTS, SECURITY_CHARTS
from app.extensions import db
from app.keys import format as keyformat
from app.usage import recorder

VALIDATE = "/api/v1/keys/validate"
CHARTS = OVERVIEW_CHARTS + SECURITY_CHARTS


def test_every_admin_page_and_chart_is_for_admins_only(
    app: Flask, admin: Portal, user: Portal
) -> None:
    paths = ["/admin/", "/admin/security"]
    paths += [f"/admin/charts/{n}.{ext}" for n in CHARTS for ext in ("json", "csv")]
    anonymous = app.test_client()
    for path in paths:
        assert admin.client.get(path).status_code == 200, path
        assert user.client.get(path).status_code == 403, path
        assert anonymous.get(path).status_code == 302, path
    denied = audit_events(app, "access.unauthorized")
    assert len(denied) == len(paths)
    for name in CHARTS:
        body = admin.client.get(f"/admin/charts/{name}.json").get_json()
        assert body["name"] == name and body["title"]
        assert all(len(s["data"]) == len(body["labels"]) for s in body["series"])


def _day(offset: int) -> datetime:
    today = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    return today - timedelta(days=offset)


def _series(body: dict) -> dict[str, list]:
    return {s["name"]: s["data"] for s in body["series"]}


def test_overview_charts_count_what_was_recorded(
    app: Flask, admin: Portal, user: Portal, other: Portal
) -> None:
    a, b = make_key(app, user, "alice-svc"), make_key(app, other, "bob-svc")
    rec = recorder(app)
    for status in (200, 200, 201, 404, 429, 500):  # today, alice
        rec.record(a.event(status=status, at=_day(0)))
    for _ in range(3):  # two days ago, bob
        rec.record(b.event(status=200, at=_day(2)))
    rec.record(a.event(status=503, at=_day(40)))  # outside the 30 days
    rec.flush()

    body = admin.client.get("/admin/charts/requests.json?days=7").get_json()
    today, two_ago = _day(0).strftime("%Y-%m-%d"), _day(2).strftime("%Y-%m-%d")
    assert body["labels"][-1] == today and len(body["labels"]) == 7
    s = _series(body)
    i, j = body["labels"].index(today), body["labels"].index(two_ago)
    assert (s["2xx"][i], s["4xx"][i], s["429"][i], s["5xx"][i]) == (3, 1, 1, 1)
    assert s["2xx"][j] == 3
    assert sum(sum(v) for v in s.values()) == 9

    rate = _series(admin.client.get("/admin/charts/error_rate.json?days=7").get_json())
    assert rate["error rate %"][-1] == pytest.approx(50.0)  # 404, 429, 500 of 6

    keys = admin.client.get("/admin/charts/keys.json?days=7").get_json()
    k = _series(keys)
    assert k["active keys"][-1] == 1 and k["active keys"][keys["labels"].index(two_ago)] == 1
    assert k["new keys"][-1] == 2  # both made today

    top = admin.client.get("/admin/charts/top_keys.json").get_json()
    assert [lab.split(" ")[0] for lab in top["labels"]] == ["alice-svc", "bob-svc"]
    assert top["series"][0]["data"] == [6, 3]
    users = admin.client.get("/admin/charts/top_users.json").get_json()
    assert users["labels"][0].startswith("alice@example.com")

    mix = admin.client.get("/admin/charts/tier_mix.json").get_json()
    m = dict(zip(mix["labels"], _series(mix)["accounts %"], strict=True))
    assert m == {"basic": 66.7, "premium": 0, "enterprise": 33.3}  # the admin is enterprise
    assert dict(zip(mix["labels"], _series(mix)["requests %"], strict=True))["basic"] == 100
    assert mix["note"] == "3 accounts, 9 requests."

    page = admin.client.get("/admin/?days=30").get_data(as_text=True)
    assert 'data-total="requests">9<' in page

    # The CSV download is the same table.
    rows = list(
        csv.reader(
            io.StringIO(
                admin.client.get("/admin/charts/requests.csv?days=7").get_data(as_text=True)
            )
        )
    )
    assert rows[0] == ["label", *(x["name"] for x in body["series"])]
    assert rows[-1][0] == today and [int(v) for v in rows[-1][1:]] == [
        x["data"][-1] for x in body["series"]
    ]


def test_the_charts_read_roll_ups_not_raw_events(app: Flask, admin: Portal, user: Portal) -> None:
    key = make_key(app, user)
    rec = recorder(app)
    for _ in range(4):
        rec.record(key.event(at=_day(0)))
    rec.flush()
    with app.app_context():
        db.session.execute(text("DELETE FROM usage_event"))
        db.session.commit()
    body = admin.client.get("/admin/charts/requests.json?days=7").get_json()
    assert _series(body)["2xx"][-1] == 4


def _audit_rows(client, link: str, action: str) -> int:
    resp = client.get(htmllib.unescape(link))
    assert resp.status_code == 200, link
    return resp.get_data(as_text=True).count(f"<code>{action}</code>")


def test_security_figures_link_to_exactly_the_events_they_count(
    app: Flask, admin: Portal, user: Portal, other: Portal
) -> None:
    api = app.test_client()
    live = make_key(app, user, "live")
    doomed = make_key(app, user, "doomed")
    bobs = make_key(app, other, "bobs")
    for _ in range(3):  # a wrong secret: invalid_key
        wrong = keyformat.assemble("klk", live.public_id, keyformat.new_secret())
        assert api.post(VALIDATE, json={"key": wrong}).status_code == 401
    for _ in range(2):
        assert api.post(VALIDATE, json={"key": "klk.nonsense"}).status_code == 401
    user.submit(
        f"/keys/{doomed.public_id}", {"confirm": "y"}, action=f"/keys/{doomed.public_id}/revoke"
    )
    for _ in range(2):
        assert api.post(VALIDATE, json={"key": doomed.plaintext}).json["error"] == "revoked"
    statuses = [api.post(VALIDATE, json={"key": bobs.plaintext}).status_code for _ in range(62)]
    assert statuses.count(429) == 2
    assert user.client.get(f"/keys/{bobs.public_id}").status_code == 404  # unauthorized
    assert (
        Portal(app.test_client()).login("alice@example.com", "not the password at all").status_code
        == 400
    )
    recorder(app).flush()

    failures = admin.client.get("/admin/charts/failures.json?days=7").get_json()
    totals = {s["name"]: sum(s["data"]) for s in failures["series"]}
    assert totals["invalid_key"] == 3 and totals["malformed_key"] == 2 and totals["revoked"] == 2
    for s in failures["series"]:
        assert _audit_rows(admin.client, s["link"], "key.validation_failed") == sum(s["data"]), s[
            "name"
        ]
    today = failures["labels"].index(datetime.now(UTC).strftime("%Y-%m-%d"))
    assert _audit_rows(admin.client, failures["links"][today], "key.validation_failed") == 7

    ips = admin.client.get("/admin/charts/failure_ips.json").get_json()
    assert ips["labels"] == ["127.0.0.1"] and ips["series"][0]["data"] == [7]
    assert _audit_rows(admin.client, ips["links"][0], "key.validation_failed") == 7

    failing = admin.client.get("/admin/charts/failing_users.json").get_json()
    # Alice's keys: three wrong secrets for one, two tries of the revoked one.
    assert failing["labels"] == ["alice@example.com"] and failing["series"][0]["data"] == [5]
    assert _audit_rows(admin.client, failing["links"][0], "key.validation_failed") == 5

    incidents = _series(admin.client.get("/admin/charts/incidents.json?days=7").get_json())
    assert incidents["unauthorized access"][-1] >= 1
    assert incidents["rate-limit refusals (per key and minute)"][-1] == 1  # two 429s, one minute
    assert incidents["failed logins"][-1] == 1 and incidents["throttled logins"][-1] == 0

    page = admin.client.get("/admin/security?days=7").get_data(as_text=True)
    figures = re.findall(r'<a href="([^"]+)" data-figure="([^"]+)">([\d,]+)</a>', page)
    assert len(figures) == 9
    actions = {
        "Failed validations": "key.validation_failed",
        "Unauthorized access": "access.unauthorized",
        "Rate-limit refusals (key and minute)": "key.rate_limited",
        "Failed logins": "user.login_failed",
        "Throttled logins": "user.login_throttled",
        "Refused second-factor codes": "user.2fa_failed",
        "Recovery codes used": "user.recovery_code_used",
        "Keys revoked": "key.revoked",
        "Keys rotated": "key.rotated",
    }
    seen = {}
    for link, label, value in figures:
        seen[label] = int(value.replace(",", ""))
        # Admin page views above were audited too, but never under these actions.
        assert _audit_rows(admin.client, link, actions[label]) == seen[label], label
    assert seen["Failed validations"] == 7 and seen["Keys revoked"] == 1
    assert seen["Rate-limit refusals (key and minute)"] == 1
    assert "2 answers with status 429 in usage" in page
    # Each line of the incidents chart links to exactly the action it counts.
    for s in admin.client.get("/admin/charts/incidents.json?days=7").get_json()["series"]:
        action = re.search(r"action=([a-z_.]+)", s["link"])[1]
        assert _audit_rows(admin.client, s["link"], action) == sum(s["data"]), s["name"]
    assert f"key:{doomed.public_id}" in page  # the recent revocation is listed


@pytest.mark.parametrize(
    "path",
    [
        "/admin/?days=5",
        "/admin/security?days=abc",
        "/admin/charts/requests.json?days=0",
        "/admin/audit?error=%22%3B drop",
        "/admin/audit?error=" + "a" * 41,
        "/admin/audit?owner=alice",
        "/admin/audit?owner=user:1%00",
        "/admin/audit?owner=user:" + "9" * 12,
    ],
)
def test_bad_parameters_get_400(admin: Portal, path: str) -> None:
    assert admin.client.get(path).status_code == 400


def test_an_unknown_chart_is_404(admin: Portal) -> None:
    assert admin.client.get("/admin/charts/nope.json").status_code == 404
    assert admin.client.get("/admin/charts/..%2Fusers.json").status_code == 404


def test_the_users_list_is_at_admin_users(admin: Portal, user: Portal) -> None:
    page = admin.client.get("/admin/users")
    assert page.status_code == 200 and "alice@example.com" in page.get_data(as_text=True)
    assert PASSWORD not in page.get_data(as_text=True)


def test_a_day_of_a_security_chart_opens_its_events_with_the_range_kept(
    app: Flask, admin: Portal, user: Portal
) -> None:
    api = app.test_client()
    live = make_key(app, user, "live")
    for _ in range(2):
        wrong = keyformat.assemble("klk", live.public_id, keyformat.new_secret())
        assert api.post(VALIDATE, json={"key": wrong}).status_code == 401
    assert api.post(VALIDATE, json={"key": "klk.nonsense"}).status_code == 401
    assert Portal(app.test_client()).login("alice@example.com", "not it at all").status_code == 400
    recorder(app).flush()

    now = datetime.now(UTC)
    today, tomorrow = now.strftime("%Y-%m-%d"), (now + timedelta(days=1)).strftime("%Y-%m-%d")
    failures = admin.client.get("/admin/charts/failures.json?days=7").get_json()
    i = failures["labels"].index(today)
    per_day = {s["name"]: s for s in failures["series"]}
    assert per_day["invalid_key"]["data"][i] == 2 and per_day["malformed_key"]["data"][i] == 1
    for s in failures["series"]:  # each bar of a day: that reason's events of that day
        assert _audit_rows(admin.client, s["links"][i], "key.validation_failed") == s["data"][i]
        assert _audit_rows(admin.client, s["links"][i - 1], "key.validation_failed") == 0
    incidents = admin.client.get("/admin/charts/incidents.json?days=7").get_json()
    logins = next(s for s in incidents["series"] if s["name"] == "failed logins")
    assert _audit_rows(admin.client, logins["links"][-1], "user.login_failed") == 1

    # The day shows in the date-time fields, and the next filter, page or export keeps it.
    page = admin.client.get(htmllib.unescape(per_day["invalid_key"]["links"][i]))
    html = page.get_data(as_text=True)
    assert f'name="since" type="datetime-local" value="{today}T00:00"' in html
    assert f'name="until" type="datetime-local" value="{tomorrow}T00:00"' in html
    assert f"from <strong>{today} 00:00</strong> until <strong>{tomorrow} 00:00</strong>" in html
    export = re.search(r'href="(/admin/audit/export\.csv[^"]+)"', html)[1]
    assert f"since={today}T00:00" in htmllib.unescape(export)
    exported = admin.client.get(htmllib.unescape(export)).get_data(as_text=True)
    assert len(list(csv.DictReader(io.StringIO(exported)))) == 2  # that reason on that day
    # An older link with a bare date reads the same and shows it in the field.
    old = admin.client.get(f"/admin/audit?since={today}").get_data(as_text=True)
    assert f'name="since" type="datetime-local" value="{today}T00:00"' in old


def test_a_key_that_dwarfs_the_rest_starts_the_top_keys_chart_on_a_log_scale(
    app: Flask, admin: Portal, user: Portal, other: Portal
) -> None:
    big, small = make_key(app, user, "big"), make_key(app, other, "small")
    rec = recorder(app)
    for _ in range(3):
        rec.record(small.event(at=_day(0)))
    for _ in range(40):
        rec.record(big.event(at=_day(0)))
    rec.flush()
    top = admin.client.get("/admin/charts/top_keys.json").get_json()
    assert top["series"][0]["data"] == [40, 3] and top["log"] is False  # 13 times: linear
    for _ in range(30):
        rec.record(big.event(at=_day(1)))
    rec.flush()
    top = admin.client.get("/admin/charts/top_keys.json").get_json()
    assert top["series"][0]["data"] == [70, 3] and top["log"] is True  # 23 times
    assert admin.client.get("/admin/charts/requests.json").get_json()["log"] is False
    # The incidents chart: rate-limit refusals on an axis of their own.
    incidents = admin.client.get("/admin/charts/incidents.json").get_json()
    axes = {s["name"]: s.get("axis") for s in incidents["series"]}
    assert axes.pop("rate-limit refusals (per key and minute)") == "right"
    assert set(axes.values()) == {None}
