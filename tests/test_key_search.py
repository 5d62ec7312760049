"""Search and filter your own keys (name, note or key ID, status, scope, last use), as
Stripe's and GitHub's key pages allow, and copy a key's ID (issue 18)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import update
from support.rows import snapshot
from support.web import public_id_of

from app.extensions import db
from app.models import ApiKey
from app.models._types import utcnow


def _names(page: str) -> list[str]:
    return re.findall(r'<td class="name"><a href="/keys/[^"]+">([^<]+)</a>', page)


@pytest.fixture
def keyring(app, user, other):
    """Alice's five keys in different states; Bob has one named like hers."""
    made = {}
    for name, scopes, custom in (
        ("billing worker", ("keys:read",), ""),
        ("orders service", ("keys:read",), "orders:read"),
        ("nightly report", ("usage:read",), ""),
        ("old cron", ("keys:read",), ""),
        ("leaked laptop", ("keys:write",), ""),
    ):
        _, plaintext = user.create_key(name, scopes=scopes, custom=custom)
        made[name] = public_id_of(plaintext)
    other.create_key("billing worker (bob)")
    gone = made["leaked laptop"]
    user.submit(f"/keys/{gone}", {"confirm": "y"}, action=f"/keys/{gone}/revoke")
    now = utcnow()
    with app.app_context():
        for name, values in (
            (
                "old cron",
                {"expires_at": now - timedelta(days=1), "last_used_at": now - timedelta(days=40)},
            ),
            ("billing worker", {"last_used_at": now - timedelta(hours=2)}),
            ("orders service", {"last_used_at": now - timedelta(days=5)}),
        ):
            db.session.execute(
                update(ApiKey).where(ApiKey.public_id == made[name]).values(**values)
            )
        db.session.commit()
    return made


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", ["leaked laptop", "old cron", "nightly report", "orders service", "billing worker"]),
        ("q=BILLING", ["billing worker"]),
        ("q=  nightly   report ", ["nightly report"]),
        ("status=live", ["nightly report", "orders service", "billing worker"]),
        ("status=revoked", ["leaked laptop"]),
        ("status=expired", ["old cron"]),
        ("scope=orders:read", ["orders service"]),
        ("scope=usage:read&status=live", ["nightly report"]),
        ("used=24h", ["billing worker"]),
        ("used=7d", ["orders service", "billing worker"]),
        ("used=never", ["leaked laptop", "nightly report"]),
        ("used=stale", ["leaked laptop", "old cron", "nightly report"]),
        ("show=live", ["nightly report", "orders service", "billing worker"]),
    ],
)
def test_filters_narrow_the_list_to_your_own_keys(user, keyring, query, expected):
    page = user.client.get(f"/keys?{query}").get_data(as_text=True)
    assert _names(page) == expected
    assert "(bob)" not in page
    if query:
        assert f"{len(expected)} of 5 keys match" in page


def test_search_finds_a_key_by_its_id(user, keyring):
    pid = keyring["nightly report"]
    page = user.client.get(f"/keys?q=klk.{pid[:6]}").get_data(as_text=True)
    assert _names(page) == ["nightly report"]
    assert f'value="klk.{pid[:6]}"' in page  # the search box keeps what was typed


def test_nothing_matching_says_so_and_offers_to_clear(user, keyring):
    page = user.client.get("/keys?q=no-such-thing").get_data(as_text=True)
    assert _names(page) == []
    assert "No key matches" in page and "None of your 5 keys matches these filters." in page
    assert 'href="/keys">Clear filters</a>' in page


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("status=deleted", "status must be one of live, active, expiring, expired, revoked."),
        ("used=yesterday", "used must be one of 24h, 7d, 30d, stale, never."),
        ("q=" + "x" * 101, "Search for at most 100 characters."),
    ],
)
def test_a_filter_value_the_form_never_offers_is_a_clear_400(app, user, keyring, query, message):
    before = snapshot(app)
    resp = user.client.get(f"/keys?{query}")
    assert resp.status_code == 400
    assert message in resp.get_data(as_text=True)
    assert snapshot(app) == before


def test_each_key_id_has_a_copy_button(user, keyring):
    page = user.client.get("/keys").get_data(as_text=True)
    for pid in keyring.values():
        assert f'data-copy-text="klk.{pid}"' in page
        assert f'aria-label="Copy key ID klk.{pid}"' in page
    detail = user.client.get(f"/keys/{keyring['billing worker']}").get_data(as_text=True)
    assert f'data-copy-text="klk.{keyring["billing worker"]}"' in detail
