"""The dashboard and the key page's analytics: JSON and CSV answers match what was recorded,
through the real recording path, and nobody sees another user's keys."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from sqlalchemy import text, update
from support.rows import count_rows
from support.usage import Key, make_key
from support.web import Portal

from app.extensions import db
from app.models import ApiKey
from app.usage import recorder
from app.usage.queries import floor

BOB = "bob@example.com"


def validate(app: Flask, body: dict, ip: str = "192.0.2.44"):
    return app.test_client().post(
        "/api/v1/keys/validate", json=body, environ_base={"REMOTE_ADDR": ip}
    )


def rows_of(resp) -> list[dict[str, str]]:
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.mimetype == "text/csv"
    return list(csv.DictReader(io.StringIO(resp.get_data(as_text=True))))


@pytest.fixture
def traffic(app: Flask, user: Portal) -> tuple[Key, Key, datetime]:
    """Two keys of alice with known traffic: now, 2 hours ago and 3 days ago."""
    a, b = make_key(app, user, "orders"), make_key(app, user, "search")
    now = datetime.now(UTC)
    rec = recorder(app)
    for status, ms, ip, path in (
        (200, 2.0, "203.0.113.1", "/v1/orders"),
        (200, 3.0, "203.0.113.1", "/v1/orders"),
        (201, 4.0, "203.0.113.2", "/v1/orders"),
        (401, 1.0, "198.51.100.9", "/v1/admin"),
        (403, 1.0, "198.51.100.9", "/v1/admin"),
        (429, 0.5, "203.0.113.1", "/v1/orders"),
        (404, 2.0, "203.0.113.1", "/v1/missing"),
        (503, 90.0, "203.0.113.2", "/v1/orders"),
    ):
        rec.record(a.event(status=status, ms=ms, ip=ip, endpoint=path, at=now))
    for _ in range(3):
        rec.record(b.event(status=200, at=now - timedelta(hours=2)))
    rec.record(b.event(status=500, at=now - timedelta(days=3)))
    rec.flush()
    return a, b, now


def test_dashboard_series_splits_every_outcome_across_the_users_keys(
    user: Portal, traffic: tuple[Key, Key, datetime]
) -> None:
    a, b, _ = traffic
    day = user.client.get("/dashboard/usage.json?range=day").get_json()
    assert day["granularity"] == "hour" and len(day["buckets"]) == 24
    assert day["total"]["count"] == 11
    assert day["total"]["outcome"] == {
        "2xx": 6,
        "3xx": 0,
        "4xx": 1,
        "401/403": 2,
        "429": 1,
        "5xx": 1,
        "other": 0,
    }
    assert day["buckets"][-1]["count"] == 8  # this hour: key a
    assert day["buckets"][-3]["count"] == 3  # two hours ago: key b
    assert [(k["key_id"], k["count"], k["errors"]) for k in day["top_keys"]] == [
        (a.public_id, 8, 5),
        (b.public_id, 3, 0),
    ]
    week = user.client.get("/dashboard/usage.json?range=week").get_json()
    assert len(week["buckets"]) == 168 and week["total"]["count"] == 12
    assert week["total"]["outcome"]["5xx"] == 2
    hour = user.client.get("/dashboard/usage.json?range=hour").get_json()
    assert len(hour["buckets"]) == 60 and hour["total"]["count"] == 8
    month = user.client.get("/dashboard/usage.json?range=month").get_json()
    assert len(month["buckets"]) == 30 and month["total"]["count"] == 12


def test_key_usage_has_latency_peak_against_the_limit_and_top_lists(
    user: Portal, traffic: tuple[Key, Key, datetime]
) -> None:
    a, _, _ = traffic
    data = user.client.get(f"/keys/{a.public_id}/usage.json?range=hour").get_json()
    total = data["total"]
    assert total["count"] == 8
    # Nearest rank over 0.5, 1, 1, 2, 2, 3, 4, 90 ms: p50 is 2 ms, p95 is 90 ms,
    # each read from a bin at most 19 % above it.
    assert 2.0 <= total["latency_p50_ms"] <= 2.0 * 2**0.25
    assert 90.0 <= total["latency_p95_ms"] <= 90.0 * 2**0.25
    # The busiest minute counts what the limit admitted: its one 429 took no slot.
    assert (data["peak"]["count"], data["peak"]["refused"]) == (7, 1)
    assert data["peak"]["limit"] == 60  # basic tier
    assert data["peak"]["share"] == round(7 / 60, 4)
    assert [(e["value"], e["count"], e["errors"]) for e in data["top_endpoints"]] == [
        ("/v1/orders", 5, 2),
        ("/v1/admin", 2, 2),
        ("/v1/missing", 1, 1),
    ]
    assert [(e["value"], e["count"]) for e in data["top_ips"]] == [
        ("203.0.113.1", 4),
        ("198.51.100.9", 2),  # ties: by value
        ("203.0.113.2", 2),
    ]
    # Every chart's table travels with the data, for the page's accessible tables.
    assert set(data["tables"]) == {"series", "endpoints", "ips"}
    # Longer ranges read day rows for whole days and hour rows at the edges: same lists.
    for range_name in ("day", "week", "month"):
        longer = user.client.get(f"/keys/{a.public_id}/usage.json?range={range_name}").get_json()
        assert longer["top_endpoints"] == data["top_endpoints"], range_name
        assert longer["top_ips"] == data["top_ips"], range_name
        assert longer["total"]["latency_p95_ms"] == total["latency_p95_ms"], range_name
        assert longer["buckets"][-1]["latency_p95_ms"] == total["latency_p95_ms"], range_name


def test_top_lists_count_whole_days_and_edge_hours(
    user: Portal, traffic: tuple[Key, Key, datetime]
) -> None:
    _, b, _ = traffic
    week = user.client.get(f"/keys/{b.public_id}/usage.json?range=week").get_json()
    assert week["top_endpoints"] == [{"value": "/v1/things", "count": 4, "errors": 1}]
    day = user.client.get(f"/keys/{b.public_id}/usage.json?range=day").get_json()
    assert day["top_endpoints"] == [{"value": "/v1/things", "count": 3, "errors": 0}]
    assert 5.0 <= week["total"]["latency_p95_ms"] <= 5.0 * 2**0.25


def test_custom_range_picks_a_granularity_and_counts_only_its_buckets(
    user: Portal, traffic: tuple[Key, Key, datetime]
) -> None:
    _, b, now = traffic
    start = floor(now - timedelta(days=4), "hour").strftime("%Y-%m-%dT%H:%M")
    end = floor(now - timedelta(hours=1), "hour").strftime("%Y-%m-%dT%H:%M")
    data = user.client.get(f"/keys/{b.public_id}/usage.json?from={start}&to={end}").get_json()
    assert data["range"] == "custom" and data["granularity"] == "hour"
    assert len(data["buckets"]) == 4 * 24 - 1
    assert data["total"]["count"] == 4  # 3 two hours ago, the 500 three days ago
    short = user.client.get(
        f"/dashboard/usage.json?range=custom&from={end}&to="
        + (floor(now, "hour") + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    ).get_json()
    assert short["granularity"] == "minute" and len(short["buckets"]) == 120


@pytest.mark.parametrize(
    "query",
    [
        "range=decade",
        "range=custom",
        "from=2026-11-01T00:00",
        "from=2026-11-02T00:00&to=2026-11-01T00:00",
        "from=2020-01-01T00:00&to=2026-01-01T00:00",
        "from=yesterday&to=today",
        "from=2026-11-01T00:00%00&to=2026-11-02T00:00",
    ],
)
def test_bad_ranges_are_a_clear_400(user: Portal, key: Key, query: str) -> None:
    for url in (
        f"/dashboard/usage.json?{query}",
        f"/keys/{key.public_id}/usage.json?{query}",
        f"/keys/{key.public_id}/usage.csv?{query}",
    ):
        resp = user.client.get(url)
        assert resp.status_code == 400, (url, resp.status_code)
        assert resp.get_json()["error"] == "bad_request"


def test_charts_read_rollups_not_raw_events(
    app: Flask, user: Portal, traffic: tuple[Key, Key, datetime]
) -> None:
    a, _, _ = traffic
    with app.app_context():
        db.session.execute(text("DELETE FROM usage_event"))
        db.session.commit()
    assert user.client.get("/dashboard/usage.json").get_json()["total"]["count"] == 11
    data = user.client.get(f"/keys/{a.public_id}/usage.json?range=day").get_json()
    assert data["total"]["count"] == 8 and data["top_endpoints"][0]["count"] == 5


def test_real_validations_show_on_the_dashboard_with_failure_reasons(
    app: Flask, user: Portal, key: Key
) -> None:
    for _ in range(2):
        assert validate(app, {"key": key.plaintext}).status_code == 200
    gone = make_key(app, user, "retired")
    resp = user.submit(
        f"/keys/{gone.public_id}", {"confirm": "y"}, action=f"/keys/{gone.public_id}/revoke"
    )
    assert resp.status_code == 302
    assert validate(app, {"key": gone.plaintext}, ip="198.51.100.7").status_code == 401
    recorder(app).flush()
    data = user.client.get("/dashboard/usage.json?range=hour").get_json()
    # The revoked key was identified, so its refusal is usage too: a 401.
    assert data["total"]["count"] == 3
    assert (data["total"]["outcome"]["2xx"], data["total"]["outcome"]["401/403"]) == (2, 1)
    page = user.client.get("/dashboard").get_data(as_text=True)
    failures = page.split('id="failures-title"')[1]
    assert "The key was revoked" in failures and "198.51.100.7" in failures
    assert "retired" in failures


def test_a_user_sees_only_their_own_keys(
    app: Flask, user: Portal, other: Portal, traffic: tuple[Key, Key, datetime]
) -> None:
    a, _, _ = traffic
    bob_key = make_key(app, other, "bobs")
    recorder(app).record(bob_key.event(status=200))
    recorder(app).flush()
    bob = other.client.get("/dashboard/usage.json?range=week").get_json()
    assert bob["total"]["count"] == 1
    assert [k["key_id"] for k in bob["top_keys"]] == [bob_key.public_id]
    alice = user.client.get("/dashboard/usage.json?range=week").get_json()
    assert alice["total"]["count"] == 12
    assert bob_key.public_id not in {k["key_id"] for k in alice["top_keys"]}
    before = count_rows(app, "audit_event")
    for url in (
        f"/keys/{a.public_id}/usage.json",
        f"/keys/{a.public_id}/usage.csv?chart=endpoints",
        f"/keys/{a.public_id}?log_status=4xx",
    ):
        resp = other.client.get(url)
        assert resp.status_code == 404, url
        assert b"/v1/orders" not in resp.data
    assert count_rows(app, "audit_event") == before + 3  # each attempt audited
    assert other.client.get("/keys/NoSuchKeyId00/usage.json").status_code == 404
    assert app.test_client().get("/dashboard/usage.json").status_code == 302


def test_csv_downloads_match_the_json(user: Portal, traffic: tuple[Key, Key, datetime]) -> None:
    a, _, _ = traffic
    series = rows_of(user.client.get("/dashboard/usage.csv?chart=series&range=day"))
    assert len(series) == 24
    assert sum(int(r["requests"]) for r in series) == 11
    assert sum(int(r["401/403"]) for r in series) == 2
    keys = rows_of(user.client.get("/dashboard/usage.csv?chart=keys&range=day"))
    assert [(r["key_id"], r["requests"]) for r in keys] == [(a.public_id, "8"), (_b(traffic), "3")]
    ips = rows_of(user.client.get(f"/keys/{a.public_id}/usage.csv?chart=ips&range=hour"))
    assert ips[0] == {"client_ip": "203.0.113.1", "requests": "4", "errors": "2"}
    resp = user.client.get(f"/keys/{a.public_id}/usage.csv?chart=series&range=hour")
    assert "attachment" in resp.headers["Content-Disposition"]
    assert len(rows_of(resp)) == 60
    assert user.client.get("/dashboard/usage.csv?chart=ips").status_code == 400


def _b(traffic: tuple[Key, Key, datetime]) -> str:
    return traffic[1].public_id


def test_csv_quotes_what_a_spreadsheet_would_run(app: Flask, user: Portal, key: Key) -> None:
    recorder(app).record(key.event(endpoint='=HYPERLINK("http://evil")'))
    recorder(app).flush()
    rows = rows_of(user.client.get(f"/keys/{key.public_id}/usage.csv?chart=endpoints"))
    assert rows[0]["endpoint"].startswith("'=")


def test_request_log_pages_and_filters_by_status(app: Flask, user: Portal, key: Key) -> None:
    now = datetime.now(UTC)
    rec = recorder(app)
    for i in range(30):
        status = 429 if i % 10 == 0 else 200
        rec.record(
            key.event(status=status, endpoint=f"/v1/item/{i}", at=now - timedelta(seconds=i))
        )
    rec.flush()
    first = user.client.get(f"/keys/{key.public_id}").get_data(as_text=True)
    assert "/v1/item/0<" in first and "/v1/item/24<" in first and "/v1/item/25<" not in first
    assert "Older requests" in first
    older = first.split('rel="next" href="')[1].split('"')[0].replace("&amp;", "&")
    second = user.client.get(older).get_data(as_text=True)
    assert "/v1/item/25<" in second and "/v1/item/29<" in second and "/v1/item/24<" not in second
    assert "Older requests" not in second
    limited = user.client.get(f"/keys/{key.public_id}?log_status=429").get_data(as_text=True)
    assert limited.count("/v1/item/") == 3
    assert "/v1/item/10<" in limited and "/v1/item/11<" not in limited


@pytest.mark.parametrize(
    "query",
    ["log_status=teapot", "log_before=99999999999999999999999", "log_before=abc", "log_status=%00"],
)
def test_request_log_bad_input_is_explained_not_a_500(
    app: Flask, user: Portal, key: Key, query: str
) -> None:
    recorder(app).record(key.event(endpoint="/v1/visible"))
    recorder(app).flush()
    resp = user.client.get(f"/keys/{key.public_id}?{query}")
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    assert 'role="alert"' in html and "/v1/visible" in html


def test_dashboard_nudges_expiring_and_unused_keys(app: Flask, user: Portal) -> None:
    soon = make_key(app, user, "soon-gone")
    idle = make_key(app, user, "idle-one")
    fresh = make_key(app, user, "fresh-one")
    now = datetime.now(UTC)
    with app.app_context():
        db.session.execute(
            update(ApiKey)
            .where(ApiKey.id == soon.id)
            .values(
                created_at=now - timedelta(days=85),  # in the last quarter of its life
                expires_at=now + timedelta(days=5),
                last_used_at=now - timedelta(days=1),
            )
        )
        db.session.execute(
            update(ApiKey)
            .where(ApiKey.id == idle.id)
            .values(created_at=now - timedelta(days=60), last_used_at=now - timedelta(days=31))
        )
        db.session.commit()
    page = user.client.get("/dashboard").get_data(as_text=True)
    expiring = page.split('id="expiring-title"')[1].split("</section>")[0]
    unused = page.split('id="unused-title"')[1].split("</section>")[0]
    assert "soon-gone" in expiring and "idle-one" not in expiring
    assert "idle-one" in unused and "fresh-one" not in unused and "soon-gone" not in unused
    assert fresh.public_id not in expiring


def test_dashboard_without_keys_says_what_to_do(user: Portal) -> None:
    page = user.client.get("/dashboard").get_data(as_text=True)
    assert "Create your first key" in page
    assert user.client.get("/dashboard/usage.json").get_json()["total"]["count"] == 0


def test_login_lands_on_the_dashboard(portal: Portal) -> None:
    portal.register("carol@example.com")
    portal.logout()
    resp = portal.login("carol@example.com")
    assert resp.headers["Location"] == "/dashboard"
    page = portal.client.get("/dashboard")
    assert page.status_code == 200 and 'aria-current="page">Dashboard' in page.get_data(
        as_text=True
    )


def test_filtered_request_log_pages_through_every_match_across_hours(
    app: Flask, user: Portal, key: Key
) -> None:
    """The roll-ups narrow where a filtered page looks; no match may be skipped."""
    now = datetime.now(UTC)
    rec = recorder(app)
    expected = []
    for i in range(120):
        at = now - timedelta(minutes=37 * i)
        status = 503 if i % 2 == 0 else 200
        rec.record(key.event(status=status, endpoint=f"/v1/e/{i}", at=at))
        if status == 503:
            expected.append(f"/v1/e/{i}")
    rec.flush()
    seen: list[str] = []
    url = f"/keys/{key.public_id}?log_status=5xx"
    for _ in range(5):
        html = user.client.get(url).get_data(as_text=True)
        log = html.split('id="request-log-title"')[1]
        seen += [p.split("<")[0] for p in log.split('<code class="wrap">')[1:]]
        if 'rel="next"' not in log:
            break
        url = log.split('rel="next" href="')[1].split('"')[0].replace("&amp;", "&")
    assert seen == expected  # all 60, newest first, none twice
    assert "/v1/e/" not in user.client.get(f"/keys/{key.public_id}?log_status=3xx").get_data(
        as_text=True
    )
