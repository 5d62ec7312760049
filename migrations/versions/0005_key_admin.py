"""key note, and who revoked a key and why when an administrator did

Revision ID: 0005
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("api_key", schema=None) as batch_op:
        batch_op.add_column(sa.Column("note", sa.String(length=1000), nullable=True))
        batch_op.add_column(sa.Column("revoked_by_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("revoked_reason", sa.String(length=500), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_api_key_revoked_by_id_user"), "user", ["revoked_by_id"], ["id"]
        )


def downgrade():
    with op.batch_alter_table("api_key", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_api_key_revoked_by_id_user"), type_="foreignkey")
        batch_op.drop_column("revoked_reason")
        batch_op.drop_column("revoked_by_id")
        batch_op.drop_column("note")
