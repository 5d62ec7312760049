"""usage events and roll-ups

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "usage_event",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("endpoint", sa.String(length=200), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("status", sa.SmallInteger(), nullable=False),
        sa.Column("response_ms", sa.Float(), nullable=False),
        sa.Column("client_ip", sa.String(length=45), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["key_id"], ["api_key.id"], name=op.f("fk_usage_event_key_id_api_key")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_event")),
    )
    with op.batch_alter_table("usage_event", schema=None) as batch_op:
        batch_op.create_index("ix_usage_event_key_id_at", ["key_id", "at"], unique=False)
        batch_op.create_index(batch_op.f("ix_usage_event_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_usage_event_owner_id"), ["owner_id"], unique=False)

    op.create_table(
        "usage_rollup",
        sa.Column("key_id", sa.Integer(), nullable=False),
        sa.Column("granularity", sa.String(length=8), nullable=False),
        sa.Column("bucket", sa.DateTime(timezone=True), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("status_2xx", sa.BigInteger(), nullable=False),
        sa.Column("status_3xx", sa.BigInteger(), nullable=False),
        sa.Column("status_4xx", sa.BigInteger(), nullable=False),
        sa.Column("status_5xx", sa.BigInteger(), nullable=False),
        sa.Column("status_other", sa.BigInteger(), nullable=False),
        sa.Column("latency_sum_ms", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["key_id"], ["api_key.id"], name=op.f("fk_usage_rollup_key_id_api_key")),
        sa.PrimaryKeyConstraint("key_id", "granularity", "bucket", name=op.f("pk_usage_rollup")),
    )
    with op.batch_alter_table("usage_rollup", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_usage_rollup_owner_id"), ["owner_id"], unique=False)

    op.create_table(
        "usage_latency_bin",
        sa.Column("key_id", sa.Integer(), nullable=False),
        sa.Column("granularity", sa.String(length=8), nullable=False),
        sa.Column("bucket", sa.DateTime(timezone=True), nullable=False),
        sa.Column("bin", sa.SmallInteger(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["key_id"], ["api_key.id"], name=op.f("fk_usage_latency_bin_key_id_api_key")),
        sa.PrimaryKeyConstraint("key_id", "granularity", "bucket", "bin", name=op.f("pk_usage_latency_bin")),
    )


def downgrade():
    op.drop_table("usage_latency_bin")
    with op.batch_alter_table("usage_rollup", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_usage_rollup_owner_id"))
    op.drop_table("usage_rollup")
    with op.batch_alter_table("usage_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_usage_event_owner_id"))
        batch_op.drop_index(batch_op.f("ix_usage_event_at"))
        batch_op.drop_index("ix_usage_event_key_id_at")
    op.drop_table("usage_event")
