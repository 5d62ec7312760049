"""Webhook settings, read once from config when the app is built."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class WebhookSettings:
    pepper: bytes
    allow_private: bool = False
    timeout: float = 5.0
    interval: float = 5.0
    retry_base: float = 5.0
    retry_hours: float = 24.0
    max_endpoints: int = 10
    # Per endpoint, in the limit storage: retries (attempts after a message's first) and
    # "send a test" presses. A dead or hostile endpoint gets a bounded stream, however
    # many messages wait for it (docs/webhooks.md).
    retry_budget: str = "60 per hour"
    test_limit: str = "5 per 10 minutes"

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> WebhookSettings:
        return cls(
            pepper=str(config["KEY_PEPPER"]).encode(),
            allow_private=bool(config.get("WEBHOOK_ALLOW_PRIVATE", False)),
            timeout=float(config.get("WEBHOOK_TIMEOUT", 5.0)),
            interval=float(config.get("WEBHOOK_INTERVAL", 5.0)),
            retry_base=float(config.get("WEBHOOK_RETRY_BASE", 5.0)),
            retry_hours=float(config.get("WEBHOOK_RETRY_HOURS", 24.0)),
            max_endpoints=int(config.get("WEBHOOK_MAX_ENDPOINTS", 10)),
            retry_budget=str(config.get("WEBHOOK_RETRY_BUDGET") or cls.retry_budget),
            test_limit=str(config.get("WEBHOOK_TEST_LIMIT") or cls.test_limit),
        )
