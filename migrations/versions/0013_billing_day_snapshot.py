"""billing snapshot: billed use per key, closed day and tier, and the days written

Revision ID: 0013
Revises: 0006
"""
from alembic import op
import sqlalchemy as sa

revision = "0013"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "billing_day",
        sa.Column("key_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tier", sa.String(length=16), nullable=False),
        sa.Column("hours", sa.Integer(), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("billable", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["key_id"], ["api_key.id"], name=op.f("fk_billing_day_key_id_api_key")),
        sa.PrimaryKeyConstraint("key_id", "day", "tier", name=op.f("pk_billing_day")),
    )
    with op.batch_alter_table("billing_day", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_billing_day_day"), ["day"], unique=False)
    op.create_table(
        "billing_day_closed",
        sa.Column("day", sa.DateTime(timezone=True), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_billing_day_closed")),
    )


def downgrade():
    op.drop_table("billing_day_closed")
    with op.batch_alter_table("billing_day", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_billing_day_day"))
    op.drop_table("billing_day")
