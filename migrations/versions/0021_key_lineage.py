"""a key's rotation lineage (its first key's public id), under which its monthly quota
is counted, so a rotation neither resets nor multiplies it

Revision ID: 0021
Revises: 0020
"""

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("api_key", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lineage", sa.String(32), nullable=True))
    # Existing successors: the first key of their chain, walked in Python (chains are
    # short; a recursive CTE reads differently on SQLite and PostgreSQL).
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT id, public_id, rotated_from_id FROM api_key")).all()
    by_id = {row.id: row for row in rows}
    for row in rows:
        if row.rotated_from_id is None:
            continue
        first, seen = row, set()
        while first.rotated_from_id in by_id and first.id not in seen:
            seen.add(first.id)
            first = by_id[first.rotated_from_id]
        bind.execute(
            sa.text("UPDATE api_key SET lineage = :lineage WHERE id = :id"),
            {"lineage": first.public_id, "id": row.id},
        )


def downgrade():
    with op.batch_alter_table("api_key", schema=None) as batch_op:
        batch_op.drop_column("lineage")
