"""ORM models. Import from here so Alembic sees every table."""

from app.models.api_key import ApiKey
from app.models.audit import (
    AuditCheckpoint,
    AuditEvent,
    AuditNode,
    AuditState,
    AuditVerification,
)
from app.models.usage import UsageLatencyBin, UsageRecord, UsageRollup, UsageTopRollup
from app.models.user import User

__all__ = [
    "ApiKey",
    "AuditCheckpoint",
    "AuditEvent",
    "AuditNode",
    "AuditState",
    "AuditVerification",
    "UsageLatencyBin",
    "UsageRecord",
    "UsageRollup",
    "UsageTopRollup",
    "User",
]
