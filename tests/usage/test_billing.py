"""`flask usage billing MONTH`: requests per owner and key, from hour roll-ups."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

from conftest import Portal
from flask import Flask

from app.usage import recorder

from .conftest import Key, make_key


def test_billing_counts_a_month_per_key_and_nothing_outside_it(
    app: Flask, user: Portal, key: Key
) -> None:
    second = make_key(app, user, name="batch")
    rec = recorder(app)
    for day, hour in ((1, 0), (15, 12), (30, 23)):
        rec.record(key.event(at=datetime(2026, 11, day, hour, 30, tzinfo=UTC)))
    rec.record(key.event(at=datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC), status=503))
    rec.record(key.event(at=datetime(2026, 12, 1, 0, 0, tzinfo=UTC)))  # next month
    rec.record(key.event(at=datetime(2026, 10, 31, 23, 59, tzinfo=UTC)))  # last month
    rec.record(second.event(at=datetime(2026, 11, 2, 8, 0, tzinfo=UTC)))
    rec.flush()

    result = app.test_cli_runner().invoke(args=["usage", "billing", "2026-11"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    got = {(int(r["key_id"]), int(r["requests"]), int(r["errors_5xx"])) for r in rows}
    assert got == {(key.id, 4, 1), (second.id, 1, 0)}
    assert {int(r["owner_id"]) for r in rows} == {key.owner_id}

    december = app.test_cli_runner().invoke(args=["usage", "billing", "2026-12"])
    assert [r["requests"] for r in csv.DictReader(io.StringIO(december.output))] == ["1"]


def test_billing_refuses_a_malformed_month(app: Flask) -> None:
    result = app.test_cli_runner().invoke(args=["usage", "billing", "November"])
    assert result.exit_code != 0
    assert "YYYY-MM" in result.output
