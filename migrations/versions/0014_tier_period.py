"""tier periods: each account's plan history, for billing's proration by days

Revision ID: 0014
Revises: 0013

Backfilled from the audit trail's user.tier_changed events (the only record of past
changes): an account starts at the tier its first change left, or its current tier.
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "tier_period",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tier", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"], name=op.f("fk_tier_period_user_id_user")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tier_period")),
    )
    op.create_index("ix_tier_period_user_since", "tier_period", ["user_id", "since"])
    bind = op.get_bind()
    users = bind.execute(sa.text('SELECT id, tier, created_at FROM "user"')).all()
    changes: dict[str, list[tuple]] = {}
    for target, at, details in bind.execute(
        sa.text(
            "SELECT target, created_at, details FROM audit_event "
            "WHERE action = 'user.tier_changed' ORDER BY created_at, id"
        )
    ):
        try:
            d = json.loads(details)
        except ValueError:
            continue
        changes.setdefault(target, []).append((at, d.get("from"), d.get("to")))
    rows = []
    for user_id, tier, created_at in users:
        seen = changes.get(f"user:{user_id}", [])
        first = seen[0][1] if seen and seen[0][1] else tier
        rows.append({"user_id": user_id, "since": created_at, "tier": first})
        rows += [{"user_id": user_id, "since": at, "tier": to} for at, _, to in seen if to]
    if rows:
        # Raw values, as read: each backend's stored time format passes through as is.
        bind.execute(
            sa.text(
                "INSERT INTO tier_period (user_id, since, tier) VALUES (:user_id, :since, :tier)"
            ),
            rows,
        )


def downgrade():
    op.drop_index("ix_tier_period_user_since", table_name="tier_period")
    op.drop_table("tier_period")
