"""Hypothesis over every portal form: the forms are found on the pages a signed-in
admin sees (so a form added later is fuzzed too), then posted with generated values
for every field, valid CSRF and form tokens kept. No answer is a 5xx, and a refusal
(anything but a redirect or the page showing a new key's secret: the form again with
its error, 400, 404) changes no account or key."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import update
from support.fuzz import EXAMPLES, SHARDS, sent, state
from support.web import Portal, csrf_token

from app.extensions import db
from app.models import User

pytestmark = pytest.mark.fuzz

KEEP = {"csrf_token", "form_token"}  # tokens the browser sends back as they came
SKIP_ACTIONS = ("/logout",)  # ends the session every later example needs


@dataclass
class FormSpec:
    page: str
    action: str
    fields: dict[str, list[str]] = field(default_factory=dict)  # name -> known values


class _Forms(HTMLParser):
    def __init__(self, page: str) -> None:
        super().__init__()
        self.page = page
        self.forms: list[FormSpec] = []
        self.current: FormSpec | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form" and (a.get("method") or "get").lower() == "post":
            self.current = FormSpec(self.page, a.get("action") or self.page)
        elif self.current is not None and tag in ("input", "select", "textarea", "option"):
            if tag == "option":
                if self._select is not None:
                    self.current.fields[self._select].append(a.get("value") or "")
                return
            name = a.get("name")
            if not name:
                return
            values = self.current.fields.setdefault(name, [])
            if a.get("value") is not None:
                values.append(a.get("value") or "")
            self._select = name if tag == "select" else None

    _select: str | None = None

    def handle_endtag(self, tag: str) -> None:
        if tag == "form" and self.current is not None:
            self.forms.append(self.current)
            self.current = None
        elif tag == "select":
            self._select = None


def discover(client: Any, pages: list[str]) -> list[FormSpec]:
    found: dict[tuple[str, str], FormSpec] = {}
    for page in pages:
        resp = client.get(page)
        if resp.status_code != 200 or resp.mimetype != "text/html":
            continue
        parser = _Forms(page)
        parser.feed(resp.get_data(as_text=True))
        for form in parser.forms:
            if form.action.startswith(SKIP_ACTIONS):
                continue
            found.setdefault((form.action, " ".join(sorted(form.fields))), form)
    return list(found.values())


NASTY = st.sampled_from(
    ["", " ", "\x00", "a\x00b", "\ud800", "\u202e", "\u200b", "%00", "' OR 1=1 --",
     "<script>x</script>", "9" * 400, "-1", "0", "1e309", "NaN", "💥", "a" * 5000,
     "klk.AAAAAAAAAAAA." + "A" * 39, "keys:read", "basic", "enterprise", "on", "y"]
)  # fmt: skip
VALUE = st.one_of(NASTY, st.text(max_size=80), st.integers(-(10**12), 10**12).map(str))


def _values(known: list[str]) -> st.SearchStrategy[list[str]]:
    choices = st.sampled_from(known) if known else VALUE
    return st.lists(st.one_of(choices, VALUE), min_size=0, max_size=3)


@pytest.fixture
def signed_in(fuzz_app: Flask) -> tuple[Portal, list[FormSpec]]:
    client = fuzz_app.test_client()
    portal = Portal(client)
    assert portal.register("fuzz-admin@example.com").status_code == 302
    with fuzz_app.app_context():
        db.session.execute(update(User).values(is_admin=True))
        db.session.commit()
    _, plaintext = portal.create_key(name="target")
    assert plaintext
    public_id = plaintext.split(".")[1]
    html = client.get("/admin/").get_data(as_text=True) + client.get("/").get_data(as_text=True)
    user_pages = sorted(set(re.findall(r'href="(/admin/users/\d+)"', html)))
    pages = [
        "/", "/keys", "/keys/new", f"/keys/{public_id}", "/account", "/dashboard",
        "/admin/", "/admin/users", "/admin/audit", "/admin/keys", "/billing", *user_pages,
    ]  # fmt: skip
    forms = discover(client, pages)
    # Signed out: register and login.
    anonymous = fuzz_app.test_client()
    forms += discover(anonymous, ["/register", "/login"])
    return portal, forms


@pytest.mark.parametrize("shard", range(SHARDS))
def test_every_form_refuses_bad_input_without_a_change(
    fuzz_app: Flask, signed_in: tuple[Portal, list[FormSpec]], shard: int
) -> None:
    portal, forms = signed_in
    actions = {f.action for f in forms}
    assert {"/register", "/login", "/keys/new"} <= actions, actions
    assert any("/revoke" in a for a in actions) and any("/rotate" in a for a in actions)
    assert any(a.startswith("/admin/") for a in actions), actions
    anonymous = fuzz_app.test_client()
    for spec in forms[shard::SHARDS]:
        client = anonymous if spec.action in ("/register", "/login") else portal.client
        _fuzz_form(fuzz_app, client, spec)


def _fuzz_form(app: Flask, client: Any, spec: FormSpec) -> None:
    names = [n for n in spec.fields if n not in KEEP]
    strategy = st.fixed_dictionaries({n: _values(spec.fields[n]) for n in names})

    @settings(
        max_examples=max(1, EXAMPLES * 2 // 3),
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    @given(
        data=strategy, drop_token=st.booleans() if "form_token" in spec.fields else st.just(False)
    )
    def run(data: dict[str, list[str]], drop_token: bool) -> None:
        page = client.get(spec.page)
        html = page.get_data(as_text=True)
        payload: list[tuple[str, str]] = [(k, v) for k, vs in data.items() for v in vs]
        if "csrf_token" in spec.fields and page.status_code == 200:
            payload.append(("csrf_token", csrf_token(html)))
        m = re.search(r'name="form_token" type="hidden" value="([^"]+)"', html)
        if m and not drop_token:
            payload.append(("form_token", m.group(1)))
        before = state(app)
        body = "&".join(f"{_quote(k)}={_quote(v)}" for k, v in payload).encode(
            "utf-8", "surrogatepass"
        )
        resp = client.post(spec.action, data=body, content_type="application/x-www-form-urlencoded")
        sent(2)
        assert resp.status_code < 500, (spec.action, payload, resp.get_data(as_text=True)[:500])
        # Accepted: a redirect, or the page that shows a new key's secret once.
        accepted = resp.status_code in (302, 303) or 'id="new-key"' in resp.get_data(as_text=True)
        if not accepted:
            assert state(app) == before, (spec.action, payload, resp.status_code)

    run()


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value.encode("utf-8", "surrogatepass"), safe="")
