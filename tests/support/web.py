"""A person in a browser, through the Flask test client: forms fetched, then posted
with their CSRF and form tokens."""

from __future__ import annotations

import re
from typing import Any

from flask.testing import FlaskClient

PASSWORD = "correct horse battery staple"
OTHER_PASSWORD = "another long passphrase here"
CSRF_RE = re.compile(
    r'name="csrf_token" type="hidden" value="([^"]+)"|'
    r'name="csrf_token" value="([^"]+)"'
)


def csrf_token(html: str) -> str:
    m = CSRF_RE.search(html)
    assert m, "page has no CSRF token"
    return m.group(1) or m.group(2)


def hidden(html: str, name: str) -> str | None:
    m = re.search(rf'id="{name}" name="{name}" type="hidden" value="([^"]*)"', html)
    return m.group(1) if m else None


def public_id_of(plaintext: str) -> str:
    return plaintext.split(".")[1]


class Portal:
    """A person in a browser: fetches the form, then posts it with its tokens."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client

    def submit(self, form_url: str, data: dict[str, Any], action: str | None = None, **kw: Any):
        page = self.client.get(form_url)
        html = page.get_data(as_text=True)
        payload = {"csrf_token": csrf_token(html), **data}
        token = hidden(html, "form_token")
        if token is not None:
            payload.setdefault("form_token", token)
        return self.client.post(action or form_url, data=payload, **kw)

    def register(self, email: str, password: str = PASSWORD):
        return self.submit("/register", {"email": email, "password": password, "confirm": password})

    def login(self, email: str, password: str = PASSWORD):
        return self.submit("/login", {"email": email, "password": password})

    def logout(self):
        return self.submit("/keys", {}, action="/logout")

    def create_key(
        self,
        name: str = "ci",
        scopes: tuple[str, ...] = ("keys:read",),
        custom: str = "",
        days: int = 30,
    ) -> tuple[Any, str | None]:
        resp = self.submit(
            "/keys/new",
            {"name": name, "scopes": list(scopes), "custom_scopes": custom, "lifetime_days": days},
        )
        m = re.search(r'id="new-key"[^>]*value="([^"]+)"', resp.get_data(as_text=True))
        return resp, (m.group(1) if m else None)
