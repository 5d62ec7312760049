"""The key policy form keeps what was typed and shows every problem beside its field,
with the first bad field focused so the browser brings it into view (issue 18)."""

from __future__ import annotations

import html
import re

from support.rows import audit_events, snapshot


def _field(page: str, name: str) -> str:
    """The field's block: its label, textarea, hint and errors."""
    m = re.search(rf'<div class="field[^"]*">\s*<label for="{name}">.*?</div>', page, re.S)
    assert m, name
    return m.group(0)


def _typed(block: str) -> str:
    m = re.search(r"<textarea[^>]*>(.*?)</textarea>", block, re.S)
    assert m
    return html.unescape(m.group(1))


def test_every_error_beside_its_field_with_what_was_typed_kept(app, user):
    _, plaintext = user.create_key()
    page = f"/keys/{plaintext.split('.')[1]}"
    before = snapshot(app)
    ranges = "203.0.113.0/24\n10.0.0.0/99\nnot-an-ip\n2001:db8::/32"
    meta = '{"customer": "c-7",, "tier": <gold>}'
    resp = user.submit(page, {"ip_allowlist": ranges, "meta": meta}, action=f"{page}/policies")
    assert resp.status_code == 400
    text = resp.get_data(as_text=True)
    assert "Not saved: fix what is marked below. Nothing was changed." in text

    allow = _field(text, "ip_allowlist")
    assert _typed(allow) == ranges
    assert "“10.0.0.0/99” is not an IP range" in allow
    assert "“not-an-ip” is not an IP range" in allow
    assert 'aria-invalid="true"' in allow and " autofocus" in allow

    meta_block = _field(text, "meta")
    assert _typed(meta_block) == meta
    assert "Not JSON: Expecting property name enclosed in double quotes (line 1, column 20)." in (
        html.unescape(meta_block)
    )
    assert 'aria-invalid="true"' in meta_block and " autofocus" not in meta_block  # one focus

    assert snapshot(app) == before
    assert audit_events(app, "key.policy_changed") == []


def test_a_bad_metadata_alone_focuses_it_and_keeps_good_ranges_typed(app, user):
    _, plaintext = user.create_key()
    page = f"/keys/{plaintext.split('.')[1]}"
    resp = user.submit(
        page, {"ip_allowlist": "198.51.100.7", "meta": "[1, 2]"}, action=f"{page}/policies"
    )
    assert resp.status_code == 400
    text = resp.get_data(as_text=True)
    allow, meta = _field(text, "ip_allowlist"), _field(text, "meta")
    assert _typed(allow) == "198.51.100.7" and "aria-invalid" not in allow
    assert '"meta" must be a JSON object (or null).' in html.unescape(meta)
    assert " autofocus" in meta
    # Fixed, it saves, and the saved values are what the page then shows.
    resp = user.submit(
        page, {"ip_allowlist": "198.51.100.7", "meta": '{"a": 1}'}, action=f"{page}/policies"
    )
    assert resp.status_code == 302 and resp.headers["Location"].endswith("#policies")
    shown = user.client.get(page).get_data(as_text=True)
    assert _typed(_field(shown, "ip_allowlist")) == "198.51.100.7/32"
    assert len(audit_events(app, "key.policy_changed")) == 1
