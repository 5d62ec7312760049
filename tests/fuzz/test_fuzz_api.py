"""Schemathesis against the served OpenAPI document: every operation, generated bodies,
parameters and headers, with a live key for the management calls. No answer is a 5xx,
and an answer that refuses (4xx) leaves accounts and keys as they were.

Its strategies are driven by hypothesis directly (its pytest plugin's lazy fixture
loading does not run on this pytest)."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from support.fuzz import EXAMPLES, SHARDS, sent, state
from support.keys import Keys

pytestmark = pytest.mark.fuzz


@pytest.mark.parametrize("shard", range(SHARDS))
def test_api_answers_every_generated_request(fuzz_app: Flask, shard: int) -> None:
    live_key = Keys(fuzz_app).key(tier="enterprise").plaintext
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", fuzz_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 6
    for operation in operations[shard::SHARDS]:

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        @given(case=operation.as_strategy())
        def run(case: Any) -> None:
            headers = dict(case.headers or {})
            if case.operation.path != "/keys/validate" and "Authorization" not in headers:
                headers["Authorization"] = f"Bearer {live_key}"
            before = state(fuzz_app)
            response = case.call(headers=headers)
            sent()
            case.validate_response(response, checks=[not_a_server_error])
            assert response.status_code < 500
            if 400 <= response.status_code < 500:
                assert state(fuzz_app) == before, (
                    case.method,
                    case.formatted_path,
                    response.status_code,
                )

        run()
