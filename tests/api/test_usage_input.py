"""Every answered validation of an identified key is billed: what a calling service
reports about the request it served (path, method) and what the client sends (its
address behind a trusted proxy, headers) can never make the usage event unstorable.
Input the database would refuse is refused at the request (400, nothing billed, and
nothing answered valid) or cleaned; it is never dropped at the flush."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from support.keys import Keys
from support.rows import count_rows, flush_usage

from app.extensions import db
from app.usage import recorder

URL = "/api/v1/keys/validate"

# Text of every kind: NUL and other controls, lone surrogates (not UTF-8), astral
# characters, characters whose upper case is longer ("ß" -> "SS"), and long strings.
ANY_TEXT = st.one_of(
    st.text(max_size=40),
    st.text(st.characters(codec=None, min_codepoint=0, max_codepoint=0x10FFFF), max_size=40),
    st.text(st.sampled_from("\x00\x1f\x7f\x85\ud800\udfffßﬃ/aA"), min_size=1, max_size=30),
    st.integers(1, 1300).map(lambda n: "/" + "ß" * n),
)
# What a header can carry (latin-1, no line breaks: no HTTP server passes those on).
HEADER_TEXT = st.text(st.characters(max_codepoint=0xFF, exclude_characters="\r\n"), max_size=80)
FIELD = st.one_of(st.none(), ANY_TEXT, st.integers(), st.lists(st.text(max_size=3), max_size=2))


def _body(plaintext: str, path: object, method: object) -> bytes:
    served: dict[str, Any] = {}
    if path is not None:
        served["path"] = path
    if method is not None:
        served["method"] = method
    # ensure_ascii: lone surrogates travel as \\ud800 escapes, as a JSON client sends them.
    return json.dumps({"key": plaintext, "request": served}).encode()


def _check_billed(app: Flask, before: int, status: int, headers: Any) -> int:
    flush_usage(app)
    assert recorder(app).pending() == 0
    after = count_rows(app, "usage_event")
    identified = "X-RateLimit-Limit" in headers
    if status == 200:
        assert identified
    # An identified key's answer (200, 403, 429) is one stored event; a refused request
    # (400) identified nothing and answered nothing valid.
    assert after == before + (1 if identified else 0), (status, after - before)
    if status == 400:
        assert not identified
    return after


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(path=FIELD, method=FIELD, agent=HEADER_TEXT)
def test_every_answered_validation_is_billed(
    app: Flask, keys: Keys, path: object, method: object, agent: str
) -> None:
    key = keys.key(email="fuzz@example.com", tier="enterprise")
    client = app.test_client()
    before = count_rows(app, "usage_event")
    resp = client.post(
        URL,
        data=_body(key.plaintext, path, method),
        headers={"Content-Type": "application/json", "User-Agent": agent},
    )
    assert resp.status_code in (200, 400, 429), resp.get_data(as_text=True)
    _check_billed(app, before, resp.status_code, resp.headers)


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/v1/things\x00", "GET"),
        ("/v1/\ud800", "GET"),
        ("/v1/\x1b[31m", "GET"),
        ("/v1/things", "GE\x00T"),
        ("/v1/things", "ß" * 16),
        ("/v1/things", "G\u0130T"),
    ],
)
def test_unstorable_request_fields_are_refused_not_answered_valid(
    app: Flask, keys: Keys, path: str, method: str
) -> None:
    key = keys.key()
    before = count_rows(app, "usage_event")
    resp = app.test_client().post(
        URL,
        data=_body(key.plaintext, path, method),
        headers={"Content-Type": "application/json"},
    )
    assert resp.status_code == 400
    assert resp.json["valid"] is False and resp.json["error"] == "bad_request"
    assert "request." in resp.json["message"]
    _check_billed(app, before, 400, resp.headers)


def test_a_long_path_is_cut_to_the_column_and_billed(app: Flask, keys: Keys) -> None:
    key = keys.key()
    resp = app.test_client().post(
        URL, json={"key": key.plaintext, "request": {"method": "get", "path": "/ß" * 500}}
    )
    assert resp.status_code == 200
    flush_usage(app)
    assert count_rows(app, "usage_event") == 1


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(forwarded=HEADER_TEXT)
def test_any_forwarded_address_is_billed(
    make_app: Any, keys: Keys, forwarded: str, app: Flask
) -> None:
    """Behind a trusted proxy, the client's address comes from X-Forwarded-For: what is
    not an IP address is stored as no address, never as a row the database refuses."""
    key = keys.key(email="proxy@example.com", tier="enterprise")
    proxied = app.extensions.setdefault("test.proxied", make_app(PROXY_FIX_HOPS=1))
    before = count_rows(proxied, "usage_event")
    resp = proxied.test_client().post(
        URL, json={"key": key.plaintext}, headers={"X-Forwarded-For": forwarded}
    )
    assert resp.status_code in (200, 429)
    _check_billed(proxied, before, resp.status_code, resp.headers)
    with proxied.app_context():
        stored = db.session.execute(
            text("SELECT client_ip FROM usage_event ORDER BY id DESC LIMIT 1")
        ).scalar_one()
    assert stored is None or ipaddress.ip_address(stored)
