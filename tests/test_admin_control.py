"""Admin control: a user's keys with actions, revoking any key with a reason its owner
sees, search/sort/pages over users, keys and the audit trail (one pager), actor emails
in audit views and exports, and audit.viewed at most once per admin per minute."""

from __future__ import annotations

import csv
import io
import json
import re

from sqlalchemy import select
from support.rows import audit_events, key_row, snapshot
from support.web import PASSWORD, Portal, public_id_of

from app import accounts
from app.audit import core, service
from app.audit import log as auditlog
from app.extensions import db
from app.models import User
from app.web import passwords


def _uid(app, email: str) -> int:
    with app.app_context():
        return db.session.scalar(select(User.id).where(User.email == email))


def _revoke(admin: Portal, uid: int, pid: str, reason: str):
    return admin.submit(
        f"/admin/users/{uid}", {"reason": reason}, action=f"/admin/keys/{pid}/revoke"
    )


def test_admin_home_is_the_overview_and_users_have_their_own_list(app, admin):
    home = admin.client.get("/admin/")
    assert home.status_code == 200 and "/admin/users" in home.get_data(as_text=True)
    assert admin.client.get("/admin/users").status_code == 200


def test_user_page_lists_keys_with_a_revoke_action(app, admin, user):
    _, plaintext = user.create_key(name="alice-svc")
    pid = public_id_of(plaintext)
    html = admin.client.get(f"/admin/users/{_uid(app, 'alice@example.com')}").get_data(as_text=True)
    assert "alice-svc" in html
    assert f'action="/admin/keys/{pid}/revoke"' in html
    assert f'id="reason-{pid}"' in html


def test_admin_revokes_with_a_reason_the_owner_sees(app, admin, user, client):
    _, plaintext = user.create_key(name="alice-svc")
    pid = public_id_of(plaintext)
    uid = _uid(app, "alice@example.com")
    resp = _revoke(admin, uid, pid, "Leaked in a public repository")
    assert resp.status_code == 302
    assert "its owner sees why" in admin.client.get(resp.headers["Location"]).get_data(as_text=True)
    assert client.post("/api/v1/keys/validate", json={"key": plaintext}).json["error"] == "revoked"
    (event,) = audit_events(app, "key.revoked", f"key:{pid}")
    assert event.sensitivity == "high"
    assert event.actor == f"user:{_uid(app, 'root@example.com')}"
    assert '"reason":"Leaked in a public repository"' in event.details
    page = user.client.get(f"/keys/{pid}").get_data(as_text=True)
    assert "Revoked by an administrator" in page
    assert "Leaked in a public repository" in page


def test_admin_revoke_needs_a_reason(app, admin, user):
    _, plaintext = user.create_key(name="alice-svc")
    pid = public_id_of(plaintext)
    uid = _uid(app, "alice@example.com")
    before = snapshot(app)
    for reason in ("", "   ", "x" * 501, "bad\x00reason", "rtl\u202etxt"):
        resp = _revoke(admin, uid, pid, reason)
        assert resp.status_code == 302
        assert "Not revoked" in admin.client.get(f"/admin/users/{uid}").get_data(as_text=True)
    assert snapshot(app) == before
    assert key_row(app, pid).revoked_at is None


def test_admin_revoke_refuses_non_admins_and_unknown_keys(app, admin, user, other):
    _, plaintext = user.create_key(name="alice-svc")
    pid = public_id_of(plaintext)
    before_key = key_row(app, pid)
    resp = other.submit("/keys", {"reason": "mine"}, action=f"/admin/keys/{pid}/revoke")
    assert resp.status_code == 403
    assert key_row(app, pid).revoked_at is None and before_key.revoked_at is None
    for bad in ("nope", "Z" * 12, "x%00y"):
        resp = admin.submit("/admin/users", {"reason": "r"}, action=f"/admin/keys/{bad}/revoke")
        assert resp.status_code == 404, bad


def _many_users(app, n: int) -> None:
    with app.app_context():
        for i in range(n):
            accounts.create_user(
                db.session, passwords(), email=f"user{i:03d}@corp.example", password=PASSWORD
            )


def test_users_search_sort_and_pages(app, admin):
    _many_users(app, 60)
    first = admin.client.get("/admin/users").get_data(as_text=True)
    assert "1\u201350 of 61 accounts" in first
    nxt = re.search(r'rel="next" href="([^"]+)"', first).group(1).replace("&amp;", "&")
    second = admin.client.get(nxt).get_data(as_text=True)
    assert "51\u201361 of 61 accounts" in second
    found = admin.client.get("/admin/users?q=USER05").get_data(as_text=True)
    emails = re.findall(r">(user\d+@corp\.example)</a>", found)
    assert emails == [f"user05{i}@corp.example" for i in range(10)]
    desc = admin.client.get("/admin/users?sort=email&dir=desc").get_data(as_text=True)
    emails = re.findall(r">([\w.]+@[\w.]+)</a>", desc)
    assert emails == sorted(emails, reverse=True) and emails[0] == "user059@corp.example"
    for bad in ("sort=password_hash", "dir=sideways", "page=0", "page=x", "page=9999999"):
        assert admin.client.get(f"/admin/users?{bad}").status_code == 400, bad
    # A page past the end is simply empty.
    assert "No account" in admin.client.get("/admin/users?page=9").get_data(as_text=True)


def test_all_keys_search_by_id_name_or_owner_sort_and_pages(app, admin, user, other):
    _, alice_key = user.create_key(name="Billing worker")
    _, bob_key = other.create_key(name="reports")
    for i in range(50):
        other.create_key(name=f"batch-{i:02d}")
    by_id = admin.client.get(f"/admin/keys?q={public_id_of(bob_key)}").get_data(as_text=True)
    assert "reports" in by_id and "Billing worker" not in by_id
    full = admin.client.get(f"/admin/keys?q=klk.{public_id_of(alice_key)}").get_data(as_text=True)
    assert "Billing worker" in full and "reports" not in full
    by_name = admin.client.get("/admin/keys?q=billing").get_data(as_text=True)
    assert "Billing worker" in by_name and "batch-" not in by_name
    by_owner = admin.client.get("/admin/keys?q=alice@").get_data(as_text=True)
    assert "Billing worker" in by_owner and "reports" not in by_owner
    # Wildcards are literal.
    assert "No key matches" in admin.client.get("/admin/keys?q=%25").get_data(as_text=True)
    page1 = admin.client.get("/admin/keys?sort=name&dir=asc").get_data(as_text=True)
    assert "1\u201350 of 52 keys" in page1
    names = re.findall(r"<td class=\"name\"><strong>([^<]+)</strong>", page1)
    assert names == sorted(names) and names[0] == "Billing worker"
    page2 = admin.client.get("/admin/keys?sort=name&dir=asc&page=2").get_data(as_text=True)
    names2 = re.findall(r"<td class=\"name\"><strong>([^<]+)</strong>", page2)
    assert names2 == ["batch-49", "reports"]
    assert admin.client.get("/admin/keys?sort=secret_hash").status_code == 400


def test_audit_search_sort_pages_and_actor_emails(app, admin, user):
    _, plaintext = user.create_key(name="alice-svc")
    pid = public_id_of(plaintext)
    alice = _uid(app, "alice@example.com")
    html = admin.client.get("/admin/audit?q=alice@example.com").get_data(as_text=True)
    assert "<code>user.registered</code>" in html and "<code>key.created</code>" in html
    assert f"user:{alice}" in html and "alice@example.com</span>" in html
    by_key = admin.client.get(f"/admin/audit?q=klk.{pid}").get_data(as_text=True)
    assert "<code>key.created</code>" in by_key and "<code>user.registered</code>" not in by_key
    by_action = admin.client.get("/admin/audit?sort=action&dir=asc").get_data(as_text=True)
    actions = re.findall(r"<td><code>([a-z_.]+)</code></td>", by_action)
    assert actions == sorted(actions)
    assert admin.client.get("/admin/audit?sort=canonical").status_code == 400
    # The stored bytes name only the id.
    (created,) = audit_events(app, "key.created", f"key:{pid}")
    assert b"alice@example.com" not in bytes(created.canonical)
    # The event page resolves it too.
    with app.app_context():
        auditlog.seal_all(db.engine, service.settings(app))
    (created,) = audit_events(app, "key.created", f"key:{pid}")
    detail = admin.client.get(f"/admin/audit/{created.seq}").get_data(as_text=True)
    assert "(alice@example.com)" in detail


def test_exports_carry_actor_emails_outside_the_hashed_bytes(app, admin, user):
    user.create_key(name="alice-svc")
    alice = _uid(app, "alice@example.com")
    resp = admin.client.get(f"/admin/audit/export.jsonl?actor=user:{alice}")
    rows = [json.loads(line) for line in resp.get_data(as_text=True).splitlines()]
    assert rows and all(r["actor_email"] == "alice@example.com" for r in rows)
    # The hashed bytes are exported as stored: each still matches its leaf hash.
    assert all(core.leaf_hash(r["canonical"].encode()).hex() == r["leaf_hash"] for r in rows)
    assert all('"actor_email"' not in r["canonical"] for r in rows)
    table = list(
        csv.reader(
            io.StringIO(
                admin.client.get(f"/admin/audit/export.csv?actor=user:{alice}").get_data(
                    as_text=True
                )
            )
        )
    )
    assert table[0][-1] == "actor_email"
    assert all(row[-1] == "alice@example.com" for row in table[1:]) and len(table) > 1


def test_audit_viewed_once_per_admin_per_minute_and_hidden_by_default(app, admin, user):
    for _ in range(5):
        assert admin.client.get("/admin/audit").status_code == 200
    admin.client.get("/admin/audit?action=key.created")
    assert len(audit_events(app, "audit.viewed")) == 1
    hidden = admin.client.get("/admin/audit").get_data(as_text=True)
    assert "<code>audit.viewed</code>" not in hidden
    shown = admin.client.get("/admin/audit?views=show").get_data(as_text=True)
    assert "<code>audit.viewed</code>" in shown
    assert admin.client.get("/admin/audit?views=maybe").status_code == 400
    # A second admin is recorded on their own.
    app.test_cli_runner().invoke(
        args=["users", "create", "ops@example.com", "--admin"], input=PASSWORD + "\n"
    )
    ops = Portal(app.test_client())
    ops.login("ops@example.com")
    ops.client.get("/admin/audit")
    assert len(audit_events(app, "audit.viewed")) == 2


def test_exports_hold_page_views_unless_the_browser_hid_them(app, admin, user):
    admin.client.get("/admin/audit")  # one audit.viewed
    html = admin.client.get("/admin/audit").get_data(as_text=True)
    link = re.search(r'href="(/admin/audit/export\.jsonl[^"]*)"', html)[1].replace("&amp;", "&")
    assert "views=hide" in link
    hidden = admin.client.get(link).get_data(as_text=True)
    assert "audit.viewed" not in hidden and "user.registered" in hidden
    everything = admin.client.get("/admin/audit/export.jsonl").get_data(as_text=True)
    assert "audit.viewed" in everything
