"""The admin audit browser through the real stack: list, filters, keyset pages, event
detail with its proof, Verify now (inline and in the background), exports, and who
may see any of it."""

from __future__ import annotations

import csv
import io
import json
import re
import time

from audit_helpers import add_events, build_log, scalar, seal, tamper
from support.servers import PATIENCE

from app.audit import core, service

CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


def seqs_on(html: str) -> list[int]:
    return [int(s) for s in re.findall(r'href="/admin/audit/(\d+)"', html)]


def viewed(app, page: str, action: str = "audit.viewed") -> int:
    return scalar(
        app,
        "SELECT count(*) FROM audit_event WHERE action = :a AND details LIKE :p",
        a=action,
        p=f'%"page":"{page}"%',
    )


def test_list_is_newest_first_with_pages_and_badges(app, admin):
    add_events(app, 120)
    seal(app)
    first = admin.client.get("/admin/audit")
    html = first.get_data(as_text=True)
    assert first.status_code == 200
    shown = seqs_on(html)
    assert len(shown) == 50 and shown == sorted(shown, reverse=True)
    assert 'class="badge sens-high"' in html
    nxt = re.search(r'rel="next" href="(/admin/audit\?[^"]*page=2[^"]*)"', html)
    assert nxt, "no link to older events"
    link = nxt.group(1).replace("&amp;", "&")
    second = seqs_on(admin.client.get(link).get_data(as_text=True))
    assert len(second) == 50 and max(second) < min(shown)
    # Two page views within a minute: one audit.viewed (at most one per admin a minute).
    assert viewed(app, "list") == 1


def test_filters_narrow_the_list(app, admin):
    add_events(app, 5, action="key.revoked", actor="user:77", target="key:t1")
    add_events(app, 5, start=5, action="key.created", actor_ip="203.0.113.9")
    seal(app)
    html = admin.client.get("/admin/audit?action=key.revoked").get_data(as_text=True)
    assert html.count("<code>key.revoked</code>") == 5 and "<code>key.created</code>" not in html
    html = admin.client.get("/admin/audit?actor_ip=203.0.113.9").get_data(as_text=True)
    assert len(seqs_on(html)) == 5
    html = admin.client.get("/admin/audit?actor=user:77&target=key:t1").get_data(as_text=True)
    assert len(seqs_on(html)) == 5
    html = admin.client.get("/admin/audit?sensitivity=critical").get_data(as_text=True)
    assert seqs_on(html) == []
    url = "/admin/audit?action=key.created&outcome=success&since=2000-01-01"
    assert len(seqs_on(admin.client.get(url).get_data(as_text=True))) == 5
    html = admin.client.get("/admin/audit?until=2000-01-01T00:00").get_data(as_text=True)
    assert seqs_on(html) == []


def test_bad_query_input_is_a_clear_400(app, admin):
    for query in ("since=yesterday", "until=2026-99-99", "before=abc", "before=-5"):
        resp = admin.client.get(f"/admin/audit?{query}")
        assert resp.status_code == 400, query


def test_pending_events_are_listed_as_pending(app, admin):
    add_events(app, 2)
    html = admin.client.get("/admin/audit").get_data(as_text=True)
    assert "pending" in html and "waiting to be sealed" in html


def test_event_detail_shows_bytes_checkpoint_and_a_proof_that_checks(app, admin):
    build_log(app, (300,))
    html = admin.client.get("/admin/audit/123").get_data(as_text=True)
    raw = scalar(app, "SELECT canonical FROM audit_event WHERE seq = 123")
    assert "Event 123" in html
    assert bytes(raw).decode().replace('"', "&#34;") in html
    assert "Covering checkpoint" in html and "#0" in html
    assert "The proof checks" in html
    proof = admin.client.get("/admin/audit/123/proof")
    assert proof.status_code == 200 and proof.mimetype == "text/plain"
    assert proof.get_data(as_text=True).startswith("c2sp.org/tlog-proof@v1\nextra ")
    with app.app_context():
        keys = service.settings().trusted
        assert core.verify_proof_text(proof.get_data(as_text=True), keys).ok
    assert admin.client.get("/admin/audit/999").status_code == 404
    assert admin.client.get("/admin/audit/999/proof").status_code == 404
    # The event view was recorded; the proof, a second view in the same minute, was not.
    assert viewed(app, "event") == 1 and viewed(app, "proof") == 0


def _verify_now(admin) -> str:
    page = admin.client.get("/admin/audit").get_data(as_text=True)
    resp = admin.client.post("/admin/audit/verify", data={"csrf_token": CSRF.search(page)[1]})
    assert resp.status_code == 302
    return resp.headers["Location"]


def test_verify_now_reports_intact_through_n(app, admin):
    build_log(app)
    sealed = scalar(app, "SELECT count(*) FROM audit_event WHERE seq IS NOT NULL")
    html = admin.client.get(_verify_now(admin)).get_data(as_text=True)
    assert f"Intact through sequence {sealed - 1}" in html
    assert re.search(r"<code class=\"small\">[0-9a-f]{64}</code>", html)
    assert scalar(app, "SELECT count(*) FROM audit_event WHERE action = 'audit.verified'") == 1


def test_verify_now_shows_the_warnings_the_cli_prints(app, admin):
    build_log(app)
    tamper(app, "UPDATE audit_state SET halted = 'the anchor holds checkpoint 9'")
    html = admin.client.get(_verify_now(admin)).get_data(as_text=True)
    assert "WARNING: the sealer is HALTED" in html
    assert "the anchor holds checkpoint 9" in html
    # Halted is not intact, even when every event checks out (issue 17).
    assert "Halted: the sealer is halted" in html and "Intact" not in html


def test_verify_now_names_the_first_bad_event(app, admin):
    build_log(app)
    tamper(app, "DELETE FROM audit_event WHERE seq = 6")
    html = admin.client.get(_verify_now(admin)).get_data(as_text=True)
    assert "Damaged at sequence 6" in html and "event_missing" in html
    outcome = scalar(
        app, "SELECT outcome FROM audit_event WHERE action = 'audit.verified' ORDER BY id DESC"
    )
    assert outcome == "failure"


def test_verify_now_runs_in_the_background_for_large_trails(app, admin):
    build_log(app)
    app.config["AUDIT_VERIFY_INLINE_MAX"] = 0
    sealed = scalar(app, "SELECT count(*) FROM audit_event WHERE seq IS NOT NULL")
    location = _verify_now(admin)
    deadline = time.monotonic() + PATIENCE
    html = admin.client.get(location).get_data(as_text=True)
    while "Verifying" in html and time.monotonic() < deadline:
        assert 'http-equiv="refresh"' in html
        time.sleep(0.1)
        html = admin.client.get(location).get_data(as_text=True)
    assert f"Intact through sequence {sealed - 1}" in html


def test_export_buttons_stream_the_filtered_range(app, admin):
    add_events(app, 4, action="key.revoked", actor="=cmd|' /C calc'!A0")
    add_events(app, 3, start=4)
    seal(app)
    html = admin.client.get("/admin/audit?action=key.revoked").get_data(as_text=True)
    link = re.search(r'href="(/admin/audit/export\.jsonl[^"]*)"', html)[1].replace("&amp;", "&")
    assert "action=key.revoked" in link
    resp = admin.client.get(link)
    assert resp.status_code == 200 and resp.headers["Cache-Control"] == "no-store"
    rows = [json.loads(line) for line in resp.get_data(as_text=True).splitlines()]
    assert len(rows) == 4
    assert all(core.leaf_hash(r["canonical"].encode()).hex() == r["leaf_hash"] for r in rows)
    resp = admin.client.get(link.replace(".jsonl", ".csv"))
    table = list(csv.reader(io.StringIO(resp.get_data(as_text=True))))
    assert table[0][:3] == ["seq", "time", "action"] and len(table) == 5
    assert all(row[4].startswith("'=") for row in table[1:])  # no formula runs
    assert admin.client.get("/admin/audit/export.xml").status_code == 404
    assert viewed(app, "export", "audit.exported") == 2  # every export is recorded


def test_non_admins_are_refused_and_recorded_as_critical(app, user):
    for path in (
        "/admin/audit",
        "/admin/audit/0",
        "/admin/audit/0/proof",
        "/admin/audit/export.csv",
    ):
        assert user.client.get(path).status_code == 403
    assert user.client.post("/admin/audit/verify").status_code in (400, 403)
    rows = scalar(
        app,
        "SELECT count(*) FROM audit_event WHERE action = 'access.unauthorized' "
        "AND sensitivity = 'critical'",
    )
    assert rows >= 4


def test_anonymous_visitors_are_sent_to_log_in(client):
    resp = client.get("/admin/audit")
    assert resp.status_code == 302 and "/login" in resp.headers["Location"]
