"""app/markup.py: a row's small pieces of markup, written in Python for speed, escape
what they are given like the templates' autoescape would."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

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
