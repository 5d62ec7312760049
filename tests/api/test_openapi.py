"""The served OpenAPI 3.1 document is valid, and real answers match what it documents."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_spec
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from support.keys import Keys, forged_key

SPEC_URL = "/api/v1/openapi.json"


class Checker:
    """Validates each answer against the operation and status the document gives it."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        resource = Resource.from_contents(spec, default_specification=DRAFT202012)
        self.registry = Registry().with_resource("urn:keyledger:openapi", resource)
        self.seen: set[tuple[str, str, str]] = set()

    def _operation(self, method: str, path: str) -> tuple[str, dict[str, Any]]:
        path = path.split("?")[0].removeprefix("/api/v1")
        for template, item in self.spec["paths"].items():
            pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
            if re.match(pattern, path) and method.lower() in item:
                return template, item[method.lower()]
        raise AssertionError(f"{method} {path} is not documented")

    def check(self, method: str, path: str, resp: Any) -> None:
        template, op = self._operation(method, path)
        status = str(resp.status_code)
        assert status in op["responses"], f"{method} {template}: {status} is not documented"
        doc = op["responses"][status]
        schema = doc["content"]["application/json"]["schema"]
        validator = Draft202012Validator(_rebase(schema), registry=self.registry)
        errors = sorted(validator.iter_errors(resp.json), key=str)
        assert not errors, f"{method} {template} {status}: {errors[0].message} in {resp.json}"
        for header in doc.get("headers", {}):
            assert header in resp.headers, f"{method} {template} {status}: no {header}"
            schema = self.spec["components"]["headers"][header]["schema"]
            if schema.get("type") == "integer":
                int(resp.headers[header])
        self.seen.add((method.lower(), template, status))


def _rebase(schema: Any) -> Any:
    """Point local refs (#/components/...) at the registered document."""
    if isinstance(schema, dict):
        return {
            k: (
                "urn:keyledger:openapi" + v
                if k == "$ref" and isinstance(v, str) and v.startswith("#")
                else _rebase(v)
            )
            for k, v in schema.items()
        }
    if isinstance(schema, list):
        return [_rebase(v) for v in schema]
    return schema


@pytest.fixture
def checked(client: FlaskClient) -> tuple[Checker, Any]:
    spec = client.get(SPEC_URL).json
    checker = Checker(spec)

    def call(method: str, path: str, **kwargs: Any) -> Any:
        resp = client.open(path, method=method, **kwargs)
        checker.check(method, path, resp)
        return resp

    return checker, call


def test_the_document_is_valid_openapi_3_1(client: FlaskClient) -> None:
    resp = client.get(SPEC_URL)
    assert resp.status_code == 200
    spec = resp.json
    assert spec["openapi"] == "3.1.0"
    validate_spec(spec)
    assert set(spec["paths"]) == {
        "/keys/validate",
        "/keys",
        "/keys/{key_id}/revoke",
        "/keys/{key_id}/rotate",
        "/keys/{key_id}/policies",
        "/keys/report-leak",
        "/secret-scanning/github",
        "/keys/{key_id}/receipts",
        "/usage",
        "/openapi.json",
    }
    assert "basic 60/minute" in spec["info"]["description"]


def test_real_answers_match_the_document(
    client: FlaskClient, keys: Keys, checked: tuple[Checker, Any]
) -> None:
    checker, call = checked
    v = "/api/v1/keys/validate"
    live = keys.key(scopes=("keys:read", "keys:write", "usage:read"))
    reader = keys.key(name="reader", scopes=("keys:read",))
    gone = keys.key(name="gone")
    keys.revoke(gone)
    old = keys.key(name="old")
    keys.expire(old)
    victim = keys.key(email="victim@example.com")

    # validate: every row of the contract table
    call("POST", v, json={"key": live.plaintext, "scopes": ["keys:read"]})
    call("POST", v, json={"key": "nope"})
    call("POST", v, json={"key": forged_key()})
    call("POST", v, headers=gone.bearer)
    call("POST", v, headers={"X-API-Key": old.plaintext})
    call("POST", v, json={"key": live.plaintext, "scopes": ["admin"]})
    call("POST", v, data=b"{", content_type="application/json")
    call("POST", v, data=b'{"key": "' + b"x" * 17000 + b'"}', content_type="application/json")

    # management
    call("GET", "/api/v1/keys", headers=live.bearer)
    made = call("POST", "/api/v1/keys", headers=live.bearer, json={"name": "n"}).json
    call("POST", "/api/v1/keys", headers=live.bearer, json={"name": 5})
    call("POST", "/api/v1/keys", headers=reader.bearer, json={"name": "n"})
    call("POST", "/api/v1/keys", headers=live.bearer, json={"name": "y" * 17000})
    rotate = f"/api/v1/keys/{made['key_id']}/rotate"
    call("POST", rotate, headers=live.bearer, json={"grace": "now"})
    call("POST", rotate, headers=live.bearer, json={})
    call("POST", f"/api/v1/keys/{made['key_id']}/revoke", headers=live.bearer)
    call("POST", f"/api/v1/keys/{victim.public_id}/revoke", headers=live.bearer)
    call("GET", "/api/v1/usage?granularity=minute", headers=live.bearer)
    call("GET", "/api/v1/usage?granularity=fortnight", headers=live.bearer)
    call("GET", "/api/v1/keys")
    call("GET", "/api/v1/usage", headers=reader.bearer)

    # per-key policies (issue 12)
    policies = f"/api/v1/keys/{live.public_id}/policies"
    call("PATCH", policies, headers=live.bearer, json={"meta": {"customer": "c-1"}})
    call("PATCH", policies, headers=live.bearer, json={"ip_allowlist": ["nope"]})
    call("PATCH", policies, headers=reader.bearer, json={"meta": {}})
    call("POST", v, json={"key": live.plaintext})  # 200 with meta
    call("PATCH", policies, headers=live.bearer, json={"ip_allowlist": ["192.0.2.0/24"]})
    call("POST", v, json={"key": live.plaintext})  # 403 ip_not_allowed
    call("POST", v, json={"key": live.plaintext, "request": {"client_ip": "192.0.2.7"}})
    call("GET", "/api/v1/keys", headers=live.bearer)  # 403 ip_not_allowed (the caller's)
    call("POST", "/api/v1/keys/report-leak", json={"credentials": [forged_key()]})
    call("POST", "/api/v1/keys/report-leak", json={"credentials": "x"})
    call("POST", "/api/v1/secret-scanning/github", json=[{"token": forged_key()}])  # 401

    # the limits
    client.application.config["TIER_RATE_LIMITS"] = {"basic": 25, "premium": 1, "enterprise": 1}
    for _ in range(30):
        last = client.post(v, headers=reader.bearer)
    checker.check("POST", v, last)
    assert last.status_code == 429
    for _ in range(30):
        client.post(v, json={"key": forged_key()})
    call("GET", "/api/v1/keys", headers={"X-API-Key": forged_key()})
    call("POST", v, json={"key": forged_key()})

    statuses = {(m, t, s) for m, t, s in checker.seen}
    for expected in ["200", "400", "401", "403", "413", "429"]:
        assert ("post", "/keys/validate", expected) in statuses
    assert {
        ("patch", "/keys/{key_id}/policies", "200"),
        ("patch", "/keys/{key_id}/policies", "400"),
        ("post", "/keys/report-leak", "202"),
        ("post", "/keys/report-leak", "400"),
        ("post", "/secret-scanning/github", "401"),
    } <= statuses
    assert {("get", "/keys", "200"), ("post", "/keys", "201"), ("get", "/usage", "200")} <= statuses
    assert ("post", "/keys/{key_id}/rotate", "201") in statuses
    assert ("post", "/keys/{key_id}/rotate", "409") in statuses
    assert ("post", "/keys/{key_id}/revoke", "404") in statuses
    assert ("get", "/keys", "429") in statuses


def test_the_503_answer_matches_the_document(make_app: Any, client: FlaskClient) -> None:
    checker = Checker(client.get(SPEC_URL).json)
    down = make_app(RATELIMIT_STORAGE_URI="redis://127.0.0.1:1/0").test_client()
    resp = down.post("/api/v1/keys/validate", json={"key": forged_key()})
    assert resp.status_code == 503
    checker.check("POST", "/api/v1/keys/validate", resp)
    mgmt = down.get("/api/v1/keys", headers={"X-API-Key": forged_key()})
    checker.check("GET", "/api/v1/keys", mgmt)
