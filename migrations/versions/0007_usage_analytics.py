"""usage analytics: 401/403 and 429 counts in the roll-ups, hourly top endpoints and IPs

Revision ID: 0007
Revises: 0011
"""
from alembic import op
import sqlalchemy as sa

revision = "0007"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("usage_rollup", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("status_401_403", sa.BigInteger(), server_default="0", nullable=False)
        )
        batch_op.add_column(
            sa.Column("status_429", sa.BigInteger(), server_default="0", nullable=False)
        )

    op.create_table(
        "usage_top_rollup",
        sa.Column("key_id", sa.Integer(), nullable=False),
        sa.Column("dim", sa.String(length=8), nullable=False),
        sa.Column("granularity", sa.String(length=8), nullable=False),
        sa.Column("bucket", sa.DateTime(timezone=True), nullable=False),
        sa.Column("value", sa.String(length=200), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["key_id"], ["api_key.id"], name=op.f("fk_usage_top_rollup_key_id_api_key")
        ),
        sa.PrimaryKeyConstraint(
            "key_id", "dim", "granularity", "bucket", "value", name=op.f("pk_usage_top_rollup")
        ),
    )
    with op.batch_alter_table("usage_top_rollup", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_usage_top_rollup_owner_id"), ["owner_id"], unique=False)
    backfill_day_bins(op.get_bind())


def backfill_day_bins(conn):
    """Day histograms from the hour ones already stored (the recorder writes them from now on)."""
    if conn.dialect.name == "postgresql":
        day = "date_trunc('day', bucket AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
    else:  # SQLite keeps 'YYYY-MM-DD HH:MM:SS.ffffff' in UTC
        day = "substr(bucket, 1, 10) || ' 00:00:00.000000'"
    conn.execute(
        sa.text(
            "INSERT INTO usage_latency_bin (key_id, granularity, bucket, bin, count) "
            f"SELECT key_id, 'day', {day}, bin, SUM(count) FROM usage_latency_bin "
            f"WHERE granularity = 'hour' GROUP BY key_id, {day}, bin"
        )
    )


def downgrade():
    op.execute("DELETE FROM usage_latency_bin WHERE granularity = 'day'")
    with op.batch_alter_table("usage_top_rollup", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_usage_top_rollup_owner_id"))
    op.drop_table("usage_top_rollup")
    with op.batch_alter_table("usage_rollup", schema=None) as batch_op:
        batch_op.drop_column("status_429")
        batch_op.drop_column("status_401_403")
