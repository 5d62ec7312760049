"""Property-based: whatever arrives, never a 5xx and never valid:true for anything but
the live key itself."""

from __future__ import annotations

import json
from typing import Any

from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.keys import Keys, forged_key

URL = "/api/v1/keys/validate"
SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# Header values a client can put on the wire (latin-1, no line breaks).
header_text = st.text(
    alphabet=st.characters(codec="latin-1", exclude_categories=("Cc",), exclude_characters="\r\n"),
    max_size=120,
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)


def _open_limits(app: Flask) -> None:
    app.config["TIER_RATE_LIMITS"] = {"basic": 100_000, "premium": 100_000, "enterprise": 100_000}
    app.config["FAILED_VALIDATION_LIMIT"] = "100000/minute"


@st.composite
def near_misses(draw: Any, live: str) -> str:
    """The live key with one edit: replaced, inserted or dropped characters, case flips."""
    i = draw(st.integers(0, len(live) - 1))
    kind = draw(st.sampled_from(["replace", "insert", "drop", "swapcase", "truncate", "pad"]))
    ch = draw(st.characters(codec="ascii", exclude_categories=("Cc",)))
    if kind == "replace":
        return live[:i] + ch + live[i + 1 :] if live[i] != ch else live[:i] + "~" + live[i + 1 :]
    if kind == "insert":
        return live[:i] + ch + live[i:]
    if kind == "drop":
        return live[:i] + live[i + 1 :]
    if kind == "swapcase":
        flipped = live[:i] + live[i].swapcase() + live[i + 1 :]
        return flipped if flipped != live else live + "x"
    if kind == "truncate":
        return live[:i]
    return live + ch


def test_validate_never_5xx_and_never_valid_for_a_non_live_key(app: Flask, keys: Keys) -> None:
    _open_limits(app)
    live = keys.key(scopes=("keys:read",))
    revoked = keys.key(name="revoked")
    keys.revoke(revoked)
    client = app.test_client()
    candidates = st.one_of(
        near_misses(live.plaintext),
        st.just(revoked.plaintext),
        st.builds(forged_key),
        st.text(max_size=80),
        json_values,
        st.just(live.plaintext),
    )

    @SETTINGS
    @given(
        key=candidates,
        where=st.sampled_from(["body", "bearer", "x-api-key", "body+bearer"]),
        scopes=st.none() | json_values | st.lists(st.sampled_from(["keys:read", "x"]), max_size=3),
        served=st.none() | json_values,
        extra=st.dictionaries(st.text(max_size=10), json_values, max_size=3),
    )
    def check(key: Any, where: str, scopes: Any, served: Any, extra: dict[str, Any]) -> None:
        body: dict[str, Any] = {k: v for k, v in extra.items() if k not in ("key", "scopes")}
        headers: dict[str, str] = {}
        presented: list[Any] = []
        if "body" in where:
            body["key"] = key
            presented.append(key)
        if where in ("bearer", "x-api-key", "body+bearer"):
            if not isinstance(key, str) or not _latin1_line(key):
                return
            name = "X-API-Key" if where == "x-api-key" else "Authorization"
            headers[name] = key if name == "X-API-Key" else f"Bearer {key}"
            presented.append(key.strip())
        if scopes is not None:
            body["scopes"] = scopes
        if served is not None:
            body["request"] = served
        resp = client.post(URL, data=json.dumps(body), headers=headers)
        assert resp.status_code in (200, 400, 401, 403, 413, 429), resp.status_code
        assert resp.is_json
        answer = resp.json
        if answer.get("valid") is True:
            assert resp.status_code == 200
            assert presented and all(p == live.plaintext for p in presented)
            assert answer["key_id"] == live.public_id
        else:
            assert answer["valid"] is False
            assert answer["error"]

    check()


def _latin1_line(text: str) -> bool:
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return not any(c in text for c in "\r\n") and all(ord(c) >= 0x20 for c in text)


def test_raw_bodies_and_headers_never_5xx(app: Flask, keys: Keys) -> None:
    _open_limits(app)
    live = keys.key()
    client = app.test_client()

    @SETTINGS
    @given(
        raw=st.binary(max_size=300) | st.text(max_size=300).map(str.encode),
        content_type=st.sampled_from(
            ["application/json", "text/plain", "application/x-www-form-urlencoded", ""]
        ),
        authorization=st.none() | header_text,
        x_api_key=st.none() | header_text,
        forwarded=st.none() | header_text,
        path=st.sampled_from(
            [URL, "/api/v1/keys", "/api/v1/keys/x/revoke", "/api/v1/keys/x/rotate"]
        ),
    )
    def check(
        raw: bytes,
        content_type: str,
        authorization: str | None,
        x_api_key: str | None,
        forwarded: str | None,
        path: str,
    ) -> None:
        headers = {"Content-Type": content_type}
        for name, value in (
            ("Authorization", authorization),
            ("X-API-Key", x_api_key),
            ("X-Forwarded-For", forwarded),
        ):
            if value is not None:
                headers[name] = value
        resp = client.post(path, data=raw, headers=headers)
        assert resp.status_code < 500, (resp.status_code, resp.get_data()[:200])
        assert resp.is_json
        if path == URL:
            assert resp.json["valid"] is False  # no live key went in

    check()
    # The endpoint still works for the live key afterwards.
    assert client.post(URL, headers=live.bearer).json["valid"] is True


def test_management_with_arbitrary_json_never_5xx(app: Flask, keys: Keys) -> None:
    _open_limits(app)
    writer = keys.key()
    client = app.test_client()

    @SETTINGS
    @given(
        body=json_values,
        path=st.sampled_from(["/api/v1/keys", f"/api/v1/keys/{writer.public_id}/rotate"]),
        query=st.dictionaries(
            st.sampled_from(["key_id", "from", "to", "granularity"]), st.text(max_size=30)
        ),
    )
    def check(body: Any, path: str, query: dict[str, str]) -> None:
        resp = client.post(path, data=json.dumps(body), headers=writer.bearer)
        assert resp.status_code < 500, resp.get_data()[:200]
        usage = client.get("/api/v1/usage", query_string=query, headers=writer.bearer)
        assert usage.status_code < 500, (query, usage.get_data()[:200])
        if resp.status_code == 201:
            # A created or rotated key never exceeds the writer's scopes or tier.
            assert set(resp.json["scopes"]) <= {"keys:read", "keys:write", "usage:read"}
            assert resp.json["tier"] == "basic"

    check()
