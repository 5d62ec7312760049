"""Key creation offers expiry presets (7, 30, 90 days, the tier's longest) and a date
picker, as Stripe and GitHub do (issue 18); a number of days still works."""

from __future__ import annotations

from datetime import timedelta

import pytest
from support.rows import key_row, snapshot
from support.web import public_id_of

from app.models._types import utcnow

SECRET = 'id="new-key"'


def _create(user, **data):
    form = {"name": "expiry", "scopes": ["keys:read"], **data}
    return user.submit("/keys/new", form)


def _lifetime(app, resp) -> timedelta:
    text = resp.get_data(as_text=True)
    key = text.split('id="new-key"', 1)[1].split('value="', 1)[1].split('"', 1)[0]
    row = key_row(app, public_id_of(key))
    return row.expires_at - row.created_at


def test_the_form_offers_presets_with_their_dates_and_a_date_picker(user):
    page = user.client.get("/keys/new").get_data(as_text=True)
    today = utcnow().date()
    for days in (7, 30):
        assert f"{days} days, until {today + timedelta(days=days):%Y-%m-%d}" in page
    assert (
        f"90 days, the longest your tier allows, until {today + timedelta(days=90):%Y-%m-%d}"
        in page
    )
    assert '<input checked id="expires-2" name="expires" type="radio" value="max">' in page
    assert 'type="date"' in page
    assert f'min="{today + timedelta(days=1):%Y-%m-%d}"' in page
    assert f'max="{today + timedelta(days=90):%Y-%m-%d}"' in page


@pytest.mark.parametrize(("choice", "days"), [("7", 7), ("30", 30), ("max", 90)])
def test_a_preset_sets_the_lifetime(app, user, choice, days):
    resp = _create(user, expires=choice)
    assert resp.status_code == 200 and SECRET in resp.get_data(as_text=True)
    assert abs(_lifetime(app, resp) - timedelta(days=days)) < timedelta(minutes=1)


def test_a_date_sets_the_lifetime(app, user):
    on = utcnow().date() + timedelta(days=10)
    resp = _create(user, expires="date", expires_on=on.isoformat())
    assert resp.status_code == 200 and SECRET in resp.get_data(as_text=True)
    assert abs(_lifetime(app, resp) - timedelta(days=10)) < timedelta(minutes=1)


def test_another_number_of_days_still_works_with_or_without_the_choice(app, user):
    for data in ({"expires": "days", "lifetime_days": "12"}, {"lifetime_days": "12"}):
        resp = _create(user, **data)
        assert resp.status_code == 200, resp.get_data(as_text=True)
        assert abs(_lifetime(app, resp) - timedelta(days=12)) < timedelta(minutes=1)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"expires": "date", "expires_on": "2099-01-01"}, "Pick a date from "),
        ({"expires": "date", "expires_on": "2020-01-01"}, "Pick a date from "),
        ({"expires": "date"}, "Pick the date the key expires."),
        ({"expires": "days", "lifetime_days": "91"}, "Choose between 1 and 90 days."),
        ({"expires": "30", "lifetime_days": "12"}, "but chose a preset"),
        ({"expires": "365"}, "Choose when the key expires."),
    ],
)
def test_a_refused_expiry_says_why_keeps_the_form_and_creates_nothing(app, user, data, message):
    before = snapshot(app)
    resp = _create(user, **data)
    assert resp.status_code == 400
    text = resp.get_data(as_text=True)
    assert message in text
    assert 'value="expiry"' in text  # the name typed is kept
    if "expires_on" in data:
        assert f'value="{data["expires_on"]}"' in text
    assert snapshot(app) == before


def test_a_longer_tier_gets_its_own_longest(app, user):
    result = app.test_cli_runner().invoke(
        args=["users", "set-tier", "alice@example.com", "premium"]
    )
    assert result.exit_code == 0, result.output
    page = user.client.get("/keys/new").get_data(as_text=True)
    assert "90 days, until" in page and "180 days, the longest your tier allows" in page
    resp = _create(user, expires="max")
    assert abs(_lifetime(app, resp) - timedelta(days=180)) < timedelta(minutes=1)
