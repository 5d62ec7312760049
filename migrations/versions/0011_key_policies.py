"""per-key policies (IP allowlist, metadata, own rate limit) and leak marks

Revision ID: 0011
Revises: 0005
"""
from alembic import op
import sqlalchemy as sa

revision = "0011"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("api_key", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ip_allowlist", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("meta", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("rate_limit", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("leaked_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("leak_location", sa.String(length=500), nullable=True))
        batch_op.add_column(
            sa.Column("leak_notified_at", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade():
    with op.batch_alter_table("api_key", schema=None) as batch_op:
        batch_op.drop_column("leak_notified_at")
        batch_op.drop_column("leak_location")
        batch_op.drop_column("leaked_at")
        batch_op.drop_column("rate_limit")
        batch_op.drop_column("meta")
        batch_op.drop_column("ip_allowlist")
