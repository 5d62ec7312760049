"""The admins' requirement: a switch on /admin/two-factor (audited critical), a grace
period in which people are sent to set it up, admin actions refused without a second
factor, and an admin resetting a locked-out user's second factor."""

from __future__ import annotations

from support.rows import audit_events, count_rows
from support.web import Portal
from test_two_factor import next_code, password_step, turn_on

from app.extensions import db


def set_policy(admin: Portal, value: str):
    return admin.submit("/admin/two-factor", {"policy": value})


def test_switch_is_audited_critical_and_refuses_unknown_values(app, admin):
    assert admin.client.get("/admin/two-factor").status_code == 200
    bad = set_policy(admin, "nobody-at-all")
    assert bad.status_code == 400
    assert not audit_events(app, "settings.2fa_policy_changed")
    resp = set_policy(admin, "everyone")
    assert resp.status_code == 302
    event = audit_events(app, "settings.2fa_policy_changed")[-1]
    assert event.sensitivity == "critical" and '"to":"everyone"' in event.details


def test_admin_actions_are_refused_without_a_second_factor(app, admin, user):
    set_policy(admin, "admins")
    # Pages still open (within the grace period); changes are refused.
    assert admin.client.get("/admin/users").status_code == 200
    resp = admin.submit("/admin/two-factor", {"policy": "none"})
    assert resp.status_code == 403
    assert "Admin actions need two-factor sign-in" in resp.get_data(as_text=True)
    # The ordinary user is not concerned by "admins".
    assert user.client.get("/keys").status_code == 200
    # With an authenticator app, the admin acts again.
    turn_on(admin)
    assert set_policy(admin, "none").status_code == 302


def test_grace_period_then_every_page_leads_to_set_up(app, admin, user):
    set_policy(admin, "everyone")
    assert user.client.get("/keys").status_code == 200  # within the grace period
    app.config["MFA_GRACE_DAYS"] = 0
    resp = user.client.get("/keys")
    assert resp.status_code == 302 and resp.headers["Location"] == "/account/two-factor"
    assert user.client.get("/account/two-factor").status_code == 200
    totp, _ = turn_on(user)
    assert user.client.get("/keys").status_code == 200
    # Log-in goes through the code step, then straight on.
    user.logout()
    password_step(user)
    resp = user.submit("/login/code", {"code": next_code(totp)})
    assert resp.headers["Location"] == "/dashboard"


def test_log_in_during_grace_is_sent_to_set_up(app, admin, user):
    set_policy(admin, "everyone")
    user.logout()
    resp = user.login("alice@example.com")
    assert resp.status_code == 302 and resp.headers["Location"] == "/account/two-factor"
    page = user.client.get("/account/two-factor").get_data(as_text=True)
    assert "require two-factor sign-in from" in page


def test_admin_resets_a_users_second_factor(app, admin, user):
    turn_on(user)
    from app.models import User

    with app.app_context():
        uid = db.session.query(User).filter_by(email="alice@example.com").one().id
    page = admin.client.get(f"/admin/users/{uid}").get_data(as_text=True)
    assert "Authenticator app on." in page
    unticked = admin.submit(
        f"/admin/users/{uid}", {}, action=f"/admin/users/{uid}/two-factor/reset"
    )
    assert unticked.status_code == 302 and count_rows(app, "totp_secret") == 1
    resp = admin.submit(
        f"/admin/users/{uid}", {"confirm_reset": "y"}, action=f"/admin/users/{uid}/two-factor/reset"
    )
    assert resp.status_code == 302
    assert count_rows(app, "totp_secret") == 0 and count_rows(app, "recovery_code") == 0
    event = audit_events(app, "user.2fa_reset")[-1]
    assert event.sensitivity == "critical" and event.target == f"user:{uid}"
    user.logout()
    assert user.login("alice@example.com").headers["Location"] == "/dashboard"


def test_a_non_admin_cannot_switch_or_reset(app, user):
    assert user.client.get("/admin/two-factor").status_code == 403
    assert count_rows(app, "site_setting") == 0


def test_refused_codes_show_on_the_admin_security_page(app, admin, user):
    turn_on(user)
    user.logout()
    password_step(user)
    user.submit("/login/code", {"code": "000000"})
    page = admin.client.get("/admin/security?days=7").get_data(as_text=True)
    import re

    m = re.search(r'data-figure="Refused second-factor codes">([\d,]+)<', page)
    assert m and m.group(1) == "1"
