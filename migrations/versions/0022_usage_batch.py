"""usage batches' ids, written with each batch, so a batch retried after an unanswered
commit is not written twice

Revision ID: 0022
Revises: 0021
"""

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "usage_batch",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("written_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_usage_batch_written_at", "usage_batch", ["written_at"])


def downgrade():
    op.drop_index("ix_usage_batch_written_at", table_name="usage_batch")
    op.drop_table("usage_batch")
