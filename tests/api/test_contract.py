"""The served OpenAPI document is the contract the server applies: every documented
maximum + 1 is refused with 400 (and changes nothing), every documented enum value of a
request is accepted. The cases are read from the document itself, so a limit added to
a model (app/api/schemas.py) is tested without a new line here."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from flask.testing import FlaskClient
from support.keys import Keys

SPEC = "/api/v1/openapi.json"
# A valid item for each documented list, so only the count is over.
ITEM = {"scopes": "keys:read", "ip_allowlist": "10.0.0.1", "credentials": "not-a-key"}
# The operations that take a body, with a valid body to start from.
BASES: dict[tuple[str, str], dict[str, Any]] = {
    ("post", "/keys/validate"): {},  # the key is added per call
    ("post", "/keys"): {"name": "n"},
    ("patch", "/keys/{key_id}/policies"): {},
    ("post", "/keys/{key_id}/rotate"): {},
    ("post", "/keys/report-leak"): {"credentials": ["not-a-key"]},
}


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    for branch in schema.get("anyOf", ()):  # nullable: the non-null branch
        if branch.get("type") != "null":
            return _resolve(spec, branch)
    return schema


def _limits(spec: dict[str, Any], schema: dict[str, Any], path: tuple = ()) -> Iterator[tuple]:
    """(path, value over the documented maximum) for every maximum of a request body."""
    schema = _resolve(spec, schema)
    for name, sub in schema.get("properties", {}).items():
        yield from _limits(spec, sub, (*path, name))
    if schema.get("type") == "array":
        items = _resolve(spec, schema.get("items", {}))
        if "maxItems" in schema:
            yield path, [ITEM[path[-1]]] * (schema["maxItems"] + 1)
        if "maxLength" in items:
            yield (*path, "[item]"), ["a" * (items["maxLength"] + 1)]
    if schema.get("type") == "string" and "maxLength" in schema:
        yield path, "a" * (schema["maxLength"] + 1)
    if schema.get("type") == "integer" and "maximum" in schema:
        yield path, schema["maximum"] + 1


def _set(body: dict[str, Any], path: tuple, value: Any) -> dict[str, Any]:
    body = copy.deepcopy(body)
    if path[-1] == "[item]":
        path = path[:-1]
    target = body
    for part in path[:-1]:
        target = target.setdefault(part, {})
    target[path[-1]] = value
    return body


def _body_schema(op: dict[str, Any]) -> dict[str, Any] | None:
    body = op.get("requestBody")
    return body["content"]["application/json"]["schema"] if body else None


def test_each_documented_maximum_plus_one_is_refused(client: FlaskClient, keys: Keys) -> None:
    spec = client.get(SPEC).json
    owner = keys.key()
    keys_before = len(client.get("/api/v1/keys", headers=owner.bearer).json["keys"])
    tried = set()
    for path, item in spec["paths"].items():
        for method, op in item.items():
            schema = _body_schema(op)
            if schema is None or "$ref" not in schema:
                continue  # GitHub's signed alert: its signature is checked first
            assert (method, path) in BASES, f"{method} {path}: add a valid base body"
            url = "/api/v1" + path.replace("{key_id}", owner.public_id)
            for field, value in _limits(spec, schema):
                body = _set(BASES[(method, path)], field, value)
                if path == "/keys/validate":
                    body["key"] = owner.plaintext
                resp = client.open(url, method=method, json=body, headers=owner.bearer)
                assert resp.status_code == 400, (method, path, field, resp.json)
                assert resp.json["error"] == "bad_request"
                tried.add((path, field))
    # The limits the issue named are among them, and nothing was made or changed.
    assert {("/keys", ("scopes",)), ("/keys/validate", ("scopes",))} <= tried
    assert ("/keys/validate", ("request", "path")) in tried
    after = client.get("/api/v1/keys", headers=owner.bearer).json["keys"]
    assert len(after) == keys_before and after[0]["ip_allowlist"] == []


def test_each_documented_enum_value_is_accepted(client: FlaskClient, keys: Keys) -> None:
    spec = client.get(SPEC).json
    rotate = _resolve(spec, _body_schema(spec["paths"]["/keys/{key_id}/rotate"]["post"]))
    graces = rotate["properties"]["grace"]["enum"]
    assert graces == ["now", "1h", "24h", "7d"]
    for grace in graces:
        key = keys.key(name=f"rotating {grace}")
        resp = client.post(
            f"/api/v1/keys/{key.public_id}/rotate", json={"grace": grace}, headers=key.bearer
        )
        assert resp.status_code == 201, (grace, resp.json)

    reader = keys.key(name="reader")
    params = {p["name"]: p for p in spec["paths"]["/usage"]["get"]["parameters"]}
    granularities = params["granularity"]["schema"]["enum"]
    assert granularities == ["minute", "hour", "day"]
    for granularity in granularities:
        resp = client.get(f"/api/v1/usage?granularity={granularity}", headers=reader.bearer)
        assert resp.status_code == 200, (granularity, resp.json)
        assert resp.json["granularity"] == granularity
