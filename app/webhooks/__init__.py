"""Webhooks: owners register endpoints; key events are posted to them, signed as the
Standard Webhooks specification says, off the request path, with retries.

Events come from where they are already recorded, so no lifecycle code has to know
about webhooks: revocations, rotations and leaks from the sealed audit log, expiry
from the keys table, rate-limit refusals from usage events (app.webhooks.events).
"""

EVENT_TYPES = (
    "key.expiring",
    "key.expired",
    "key.revoked",
    "key.rotated",
    "key.leaked",
    "key.rate_limited",
)
TEST_EVENT = "webhook.test"
