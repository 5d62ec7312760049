"""Making an account an admin asks for a ticked box, as disabling one does (issue 18);
removing admin (which takes power away) does not."""

from __future__ import annotations

from sqlalchemy import select
from support.rows import audit_events

from app.extensions import db
from app.models import User


def _user(app, email: str) -> tuple[int, bool]:
    with app.app_context():
        row = db.session.execute(select(User.id, User.is_admin).where(User.email == email)).one()
        return row.id, row.is_admin


def test_make_admin_needs_the_box(app, admin, other):
    bob, _ = _user(app, "bob@example.com")
    page = admin.client.get(f"/admin/users/{bob}").get_data(as_text=True)
    assert 'name="confirm_grant"' in page and "every admin power" in page

    for data in ({}, {"confirm_grant": ""}):
        resp = admin.submit(f"/admin/users/{bob}", data, action=f"/admin/users/{bob}/admin/grant")
        assert resp.status_code == 302
        assert _user(app, "bob@example.com")[1] is False
    page = admin.client.get(f"/admin/users/{bob}").get_data(as_text=True)
    assert "Tick the confirmation box. Nothing was changed." in page
    assert audit_events(app, "user.admin_granted") == []

    admin.submit(
        f"/admin/users/{bob}", {"confirm_grant": "y"}, action=f"/admin/users/{bob}/admin/grant"
    )
    assert _user(app, "bob@example.com")[1] is True
    assert len(audit_events(app, "user.admin_granted")) == 1
    # Taking it away again is one click.
    admin.submit(f"/admin/users/{bob}", {}, action=f"/admin/users/{bob}/admin/remove")
    assert _user(app, "bob@example.com")[1] is False


def test_the_two_boxes_on_the_page_have_their_own_ids(app, admin, other):
    bob, _ = _user(app, "bob@example.com")
    page = admin.client.get(f"/admin/users/{bob}").get_data(as_text=True)
    assert page.count('id="confirm"') == 1 and page.count('id="confirm_grant"') == 1
