"""The small pieces of markup a list repeats on every row (a time, a status, scope
chips, the test-key badge), and the keys list's whole rows, as template globals
written in Python.

Why not Jinja macros: a macro call costs more than the markup it writes, and a list
makes several per row (docs/performance.md, "The keys page"). Every template
calls these by name, without an import; the markup is defined here only.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable
from datetime import datetime
from typing import Any
from urllib.parse import quote

from flask import Flask, url_for
from markupsafe import Markup, escape

from app import times

_NEVER = Markup('<span class="muted">never</span>')
_NONE = '<span class="muted">none</span>'
_SUPERSEDED = (
    ' <span class="badge status-superseded"'
    ' title="Rotated: a successor replaces this key">superseded</span>'
)
_EMPTY = Markup("")
_TEST = Markup(
    ' <span class="badge status-test" title="Test key: validates like any key, never billed"'
    " data-test-key>test</span>"
)

# Built as plain strings and marked safe once: `Markup % args` wraps and escapes each
# argument through helper objects, which cost more than the markup itself. Every text
# put in is escaped here or is a time's digits.


def when(at: datetime | None) -> Markup:
    """Date, then the time in a muted second line inside tables (inline elsewhere)."""
    return Markup(_when(at))  # noqa: S704 - digits of a datetime only


def status_badge(status: str) -> Markup:
    return Markup(_status_badge(status))  # noqa: S704 - escaped


def test_badge(key: Any) -> Markup:
    """A test key (ApiKey.test): validates like any key, never billed."""
    return _TEST if key.test else _EMPTY


def chips(scopes: Iterable[str]) -> Markup:
    return Markup(_chips(scopes))  # noqa: S704 - escaped


# The same as plain strings, for key_rows: a Markup made per piece and then formatted
# into the row's string is work thrown away.


def _when(at: datetime | None) -> str:
    if not at:
        return _NEVER
    minute = times.display(at, "minute")  # "2026-11-25 10:00": the date, then the time
    return (
        f'<span class="when"><time datetime="{at.isoformat()}">{minute[:10]} '
        f'<span class="time">{minute[11:]} UTC</span></time></span>'
    )


def _status_badge(status: str) -> str:
    text = escape(status)
    return f'<span class="badge status-{text}">{text}</span>'


def _chips(scopes: Iterable[str]) -> str:
    inner = "".join([f'<span class="chip">{escape(s)}</span>' for s in scopes]) or _NONE
    return f'<span class="chips">{inner}</span>'


def key_rows(
    keys: Iterable[Any],
    status: Callable[[Any], str],
    superseded: Container[int],
    tier: str,
    copy_icon: Markup,
) -> Markup:
    """The rows of the portal's keys list (templates/portal/keys.html), one string for
    the page: rows written in Jinja were most of the page's rendering (docs/performance.md).

    Every key listed is the signed-in user's, so its tier (ApiKey.tier) is `tier`."""
    tier_badge = f'<span class="badge tier-{escape(tier)}">{escape(tier)}</span>'
    icon = escape(copy_icon)  # the icon macro's markup (templates/_macros/forms.html)
    # The key page's URL built once, the id put in per row: url_for per row
    # showed in the page's profile. Public ids are letters and digits (app/keys/format.py).
    head, _, tail = map(escape, url_for("portal.key_detail", public_id="\0").partition("%00"))
    out = []
    for key in keys:
        s = escape(status(key))
        key_id = escape(f"{key.prefix}.{key.public_id}")
        href = f"{head}{quote(key.public_id, safe='')}{tail}"
        ip = key.last_used_ip
        used_from = f' <span class="muted small nowrap">from {escape(ip)}</span>' if ip else ""
        out.append(
            f'\n    \n    <tr class="row-{s}">\n'
            f'      <td class="name"><a href="{href}">{escape(key.name)}</a>'
            f"{_TEST if key.test else ''}{_SUPERSEDED if key.id in superseded else ''}</td>\n"
            f'      <td data-label="Key ID"><span class="key-id">{key_id}</span>'
            f' <button type="button" class="button small copy-id" data-copy-text="{key_id}"'
            f' data-copy-done="Key ID {key_id} is on your clipboard."'
            f' aria-label="Copy key ID {key_id}" title="Copy key ID">{icon}'
            '<span class="visually-hidden">Copy</span></button></td>\n'
            f'      <td data-label="Scopes">{_chips(key.scopes)}</td>\n'
            f'      <td data-label="Tier">{tier_badge}</td>\n'
            f'      <td data-label="Created">{_when(key.created_at)}</td>\n'
            f'      <td data-label="Expires">{_when(key.expires_at)}</td>\n'
            f'      <td data-label="Last used"><span>{_when(key.last_used_at)}'
            f"{used_from}</span></td>\n"
            f'      <td data-label="Status">{_status_badge(s)}</td>\n'
            "    </tr>\n  "
        )
    return Markup("".join(out))  # noqa: S704 - every text put in is escaped above


def email_parts(address: str) -> Markup:
    """An email address in a narrow column: two parts that do not break, the one break
    before the @; CSS ends a part too long for the column in an ellipsis (`.email`).
    The link around it carries the whole address as title and aria-label: a screen
    reader would otherwise hear a space at the break."""
    local, at, domain = address.rpartition("@")
    if not (local and at):
        return Markup(f"<span>{escape(address)}</span>")  # noqa: S704 - escaped
    return Markup(f"<span>{escape(local)}</span><wbr><span>@{escape(domain)}</span>")  # noqa: S704 - escaped


def register(app: Flask) -> None:
    for helper in (when, status_badge, test_badge, chips, key_rows, email_parts):
        app.add_template_global(helper)
