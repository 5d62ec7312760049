"""app/markup.py: a row's small pieces of markup, written in Python for speed, escape
what they are given like the templates' autoescape would."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

from flask import Flask
from markupsafe import Markup

from app import markup

AT = datetime(2026, 12, 31, 23, 59, 58, tzinfo=UTC)


def test_when_shows_the_utc_date_and_time_or_never() -> None:
    assert str(markup.when(AT)) == (
        '<span class="when"><time datetime="2026-12-31T23:59:58+00:00">2026-12-31 '
        '<span class="time">23:59 UTC</span></time></span>'
    )
    assert str(markup.when(None)) == '<span class="muted">never</span>'


def test_text_put_in_is_escaped() -> None:
    assert str(markup.status_badge('a"<b>')) == (
        '<span class="badge status-a&#34;&lt;b&gt;">a&#34;&lt;b&gt;</span>'
    )
    assert str(markup.chips(["keys:read", "<x>"])) == (
        '<span class="chips"><span class="chip">keys:read</span>'
        '<span class="chip">&lt;x&gt;</span></span>'
    )
    assert str(markup.chips([])) == '<span class="chips"><span class="muted">none</span></span>'


def test_test_badge_only_on_a_test_key() -> None:
    assert "data-test-key" in markup.test_badge(SimpleNamespace(test=True))
    assert str(markup.test_badge(SimpleNamespace(test=False))) == ""


def test_a_key_row_escapes_every_text(app: Flask) -> None:
    key = SimpleNamespace(
        id=7,
        public_id="Ab<1",
        prefix="klk",
        name='<b>"n"</b>',
        test=False,
        scopes=["<s>"],
        created_at=AT,
        expires_at=AT,
        last_used_at=AT,
        last_used_ip="<ip>",
    )
    with app.test_request_context():
        rows = str(markup.key_rows([key], lambda k: "<st>", {7}, "<t>", Markup("<svg/>")))
    assert "<b>" not in rows and "&lt;b&gt;&#34;n&#34;&lt;/b&gt;" in rows
    assert 'href="/keys/Ab%3C1"' in rows and 'data-copy-text="klk.Ab&lt;1"' in rows
    assert "from &lt;ip&gt;" in rows and "&lt;s&gt;" in rows and "tier-&lt;t&gt;" in rows
    assert 'class="row-&lt;st&gt;"' in rows and "status-superseded" in rows and "<svg/>" in rows
