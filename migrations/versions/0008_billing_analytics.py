"""usage roll-ups: tier per period (the 429 count is 0007's), day granularity index

Revision ID: 0008
Revises: 0007
"""
from alembic import op
import sqlalchemy as sa

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("usage_rollup", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tier", sa.String(length=16), nullable=True))
        batch_op.create_index("ix_usage_rollup_granularity_bucket", ["granularity", "bucket"], unique=False)


def downgrade():
    with op.batch_alter_table("usage_rollup", schema=None) as batch_op:
        batch_op.drop_index("ix_usage_rollup_granularity_bucket")
        batch_op.drop_column("tier")
