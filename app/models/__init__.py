"""ORM models. Import from here so Alembic sees every table."""

from app.models.api_key import ApiKey
from app.models.audit import (
    AuditCheckpoint,
    AuditCosignature,
    AuditEvent,
    AuditNode,
    AuditState,
    AuditVerification,
)
from app.models.billing import BillingDay, BillingDayClosed, TierPeriod
from app.models.second_factor import (
    KnownDevice,
    Passkey,
    PasswordReset,
    RecoveryCode,
    SiteSetting,
    TotpSecret,
)
from app.models.session import UserSession
from app.models.usage import UsageBatch, UsageLatencyBin, UsageRecord, UsageRollup, UsageTopRollup
from app.models.user import User
from app.models.webhook import WebhookCursor, WebhookDelivery, WebhookEndpoint

__all__ = [
    "ApiKey",
    "AuditCheckpoint",
    "AuditCosignature",
    "AuditEvent",
    "AuditNode",
    "AuditState",
    "AuditVerification",
    "BillingDay",
    "BillingDayClosed",
    "KnownDevice",
    "Passkey",
    "PasswordReset",
    "RecoveryCode",
    "SiteSetting",
    "TierPeriod",
    "TotpSecret",
    "UsageBatch",
    "UsageLatencyBin",
    "UsageRecord",
    "UsageRollup",
    "UsageTopRollup",
    "User",
    "UserSession",
    "WebhookCursor",
    "WebhookDelivery",
    "WebhookEndpoint",
]
