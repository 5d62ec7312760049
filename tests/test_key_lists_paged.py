"""Every key list goes through the one pager (app/pager.py): the owner's /keys and an
admin's user page stay bounded however many keys an account holds."""

from __future__ import annotations

from sqlalchemy import select

from app.extensions import db
from app.keys import lifecycle
from app.models import User
from app.pager import PER_PAGE
from app.web import key_policy


def _many_keys(app, email: str, n: int) -> None:
    with app.test_request_context():
        owner = db.session.scalar(select(User).where(User.email == email))
        for i in range(n):
            lifecycle.create_key(
                db.session, key_policy(), owner, name=f"svc-{i:03d}", scopes=[], lifetime_days=30
            )


def test_the_owners_key_list_is_paged(app, user) -> None:
    _many_keys(app, "alice@example.com", PER_PAGE + 1)
    first = user.client.get("/keys").get_data(as_text=True)
    assert f"<strong>{PER_PAGE + 1}</strong> keys" in first  # the account's figure
    assert f"<strong>{PER_PAGE + 1}</strong> active" in first
    assert f"svc-{PER_PAGE:03d}" in first and "svc-000" not in first  # newest first
    assert 'rel="next" href="/keys?sort=created&amp;dir=desc&amp;page=2"' in first
    second = user.client.get("/keys?page=2").get_data(as_text=True)
    assert "svc-000" in second and f"svc-{PER_PAGE:03d}" not in second
    live = user.client.get("/keys?show=live&page=2").get_data(as_text=True)
    assert "svc-000" in live
    bad = user.client.get("/keys?page=0")
    assert bad.status_code == 400 and "page must be a whole number" in bad.get_data(as_text=True)


def test_an_admins_user_page_pages_the_users_keys(app, user, admin) -> None:
    _many_keys(app, "alice@example.com", PER_PAGE + 1)
    with app.app_context():
        alice = db.session.scalar(select(User).where(User.email == "alice@example.com"))
        alice_id = alice.id
    page = admin.client.get(f"/admin/users/{alice_id}").get_data(as_text=True)
    assert f"<dt>Keys</dt><dd>{PER_PAGE + 1}</dd>" in page
    assert "svc-000" not in page and f"svc-{PER_PAGE:03d}" in page
    assert f'href="/admin/users/{alice_id}?sort=created&amp;dir=desc&amp;page=2"' in page
    assert "svc-000" in admin.client.get(f"/admin/users/{alice_id}?page=2").get_data(as_text=True)
