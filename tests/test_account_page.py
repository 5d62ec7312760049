"""/account: password change, sessions (End, log out everywhere), closing the account."""

from __future__ import annotations

import re

from sqlalchemy import select
from support.rows import audit_events, key_row
from support.web import OTHER_PASSWORD, PASSWORD, Portal, public_id_of

from app.extensions import db
from app.models import User, UserSession

NEW_PASSWORD = "a brand new long passphrase"


def second_browser(app, email="alice@example.com", password=PASSWORD, agent="Firefox"):
    agents = {
        "Firefox": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        "iPhone": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
    }
    client = app.test_client()
    client.environ_base["HTTP_USER_AGENT"] = agents[agent]
    other = Portal(client)
    resp = other.login(email, password)
    assert resp.status_code == 302, resp.get_data(as_text=True)
    return other


def session_count(app) -> int:
    with app.app_context():
        return len(db.session.scalars(select(UserSession)).all())


def test_the_account_page_lists_sessions_with_device_ip_and_this_one(app, user, client):
    second_browser(app, agent="iPhone")
    page = client.get("/account")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Mobile Safari on iOS" in html
    assert html.count('badge status-active">this one') == 1
    assert html.count(">End<") == 1  # only the other session can be ended here
    # This session's action cell is empty, so a phone's stacked row shows no bare label.
    assert html.count('<td data-label="Action"></td>') == 1
    assert "127.0.0.1" in html


def test_password_change_ends_every_other_session_and_is_audited(app, user, client):
    laptop = second_browser(app)
    phone = second_browser(app, agent="iPhone")
    resp = user.submit(
        "/account",
        {"current": PASSWORD, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
        action="/account/password",
    )
    assert resp.status_code == 302
    assert "2 other sessions ended" in client.get("/account").get_data(as_text=True)
    assert client.get("/keys").status_code == 200  # this one stays
    for other in (laptop, phone):
        assert other.client.get("/keys").status_code == 302
    assert session_count(app) == 1
    (event,) = audit_events(app, "user.password_changed")
    assert event.sensitivity == "high" and '"sessions_ended":2' in event.details
    assert PASSWORD not in event.details and NEW_PASSWORD not in event.details
    user.logout()
    assert user.login("alice@example.com").status_code == 400
    assert user.login("alice@example.com", NEW_PASSWORD).status_code == 302


def test_password_change_needs_the_current_password(app, user, client):
    laptop = second_browser(app)
    resp = user.submit(
        "/account",
        {"current": "a wrong current password", "password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
        action="/account/password",
    )
    assert resp.status_code == 400
    assert "The current password is wrong" in resp.get_data(as_text=True)
    assert laptop.client.get("/keys").status_code == 200
    assert audit_events(app, "user.password_changed") == []


def test_password_change_without_csrf_changes_nothing(app, user, client):
    resp = client.post(
        "/account/password",
        data={"current": PASSWORD, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
    )
    assert resp.status_code == 400
    assert audit_events(app, "user.password_changed") == []


def test_end_one_session_logs_that_browser_out(app, user, client):
    laptop = second_browser(app)
    html = client.get("/account").get_data(as_text=True)
    (other_id,) = re.findall(r'name="session_id" value="(\d+)"', html)
    resp = user.submit("/account", {"session_id": other_id}, action="/account/sessions/end")
    assert resp.status_code == 302
    assert laptop.client.get("/keys").status_code == 302
    assert client.get("/keys").status_code == 200
    assert len(audit_events(app, "user.session_ended")) == 1


def test_nobody_can_end_someone_elses_session(app, user, other, client):
    with app.app_context():
        bobs = db.session.scalars(
            select(UserSession.id).join(User).where(User.email == "bob@example.com")
        ).all()
    resp = user.submit("/account", {"session_id": bobs[0]}, action="/account/sessions/end")
    assert resp.status_code == 302
    assert other.client.get("/keys").status_code == 200
    for bad in ("abc", "-1", "99999999999999999999", "1\x00"):
        resp = user.submit("/account", {"session_id": bad}, action="/account/sessions/end")
        assert resp.status_code == 302
    assert other.client.get("/keys").status_code == 200


def test_log_out_everywhere_keeps_only_this_one(app, user, client):
    browsers = [second_browser(app), second_browser(app, agent="iPhone")]
    resp = user.submit("/account", {}, action="/account/sessions/end-others")
    assert resp.status_code == 302
    assert "2 sessions ended" in client.get("/account").get_data(as_text=True)
    assert all(b.client.get("/keys").status_code == 302 for b in browsers)
    assert client.get("/keys").status_code == 200
    (event,) = audit_events(app, "user.sessions_ended")
    assert event.sensitivity == "high"


def test_close_account_revokes_keys_ends_sessions_and_keeps_the_trail(app, user, client):
    _, first = user.create_key("one")
    _, second = user.create_key("two")
    laptop = second_browser(app)
    before = len(audit_events(app))
    resp = user.submit("/account", {"password": PASSWORD, "confirm": "y"}, action="/account/close")
    assert resp.status_code == 302 and resp.headers["Location"] == "/login"
    for key in (first, second):
        assert key_row(app, public_id_of(key)).revoked_at is not None
    assert client.get("/keys").status_code == 302
    assert laptop.client.get("/keys").status_code == 302
    assert session_count(app) == 0
    assert len(audit_events(app)) >= before + 3  # nothing removed, events added
    (closed,) = audit_events(app, "user.closed")
    assert '"keys_revoked":2' in closed.details
    revoked = audit_events(app, "key.revoked")
    assert len(revoked) == 2 and all("account closed" in e.details for e in revoked)
    resp = user.login("alice@example.com")
    assert resp.status_code == 400
    assert "closed by its owner" in resp.get_data(as_text=True)
    assert validate(client, first) == 401


def validate(client, key: str) -> int:
    return client.post("/api/v1/keys/validate", json={"key": key}).status_code


def test_close_account_needs_the_password_and_the_box(app, user, client):
    _, key = user.create_key("one")
    for data in ({"password": "wrong password here", "confirm": "y"}, {"password": PASSWORD}):
        resp = user.submit("/account", data, action="/account/close")
        assert resp.status_code == 400
    assert key_row(app, public_id_of(key)).revoked_at is None
    assert client.get("/keys").status_code == 200
    assert audit_events(app, "user.closed") == []


def test_the_account_page_needs_a_login(client):
    assert client.get("/account").status_code == 302
    assert OTHER_PASSWORD  # shared fixture constant stays imported for other tests
