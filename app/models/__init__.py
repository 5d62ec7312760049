"""ORM models. Import from here so Alembic sees every table."""

from app.models.api_key import ApiKey
from app.models.audit import AuditEvent, AuditState
from app.models.usage import UsageLatencyBin, UsageRecord, UsageRollup
from app.models.user import User

__all__ = [
    "ApiKey",
    "AuditEvent",
    "AuditState",
    "UsageLatencyBin",
    "UsageRecord",
    "UsageRollup",
    "User",
]
