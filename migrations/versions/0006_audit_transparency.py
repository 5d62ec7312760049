"""audit transparency: witness cosignatures, fork halt, prunable payloads

Revision ID: 0006
Revises: 0008

Checkpoints signed from now on are C2SP signed notes; the format-1 checkpoints
already stored stay as they are and the verifiers read both. Adds the witness
cosignature table, the sealer's halt flag (fork protection), and lets `canonical`
become NULL when `flask audit prune` drops an old payload (the PostgreSQL trigger
allows exactly that one change besides sealing).
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0008"
branch_labels = None
depends_on = None

TRIGGER_FUNCTION = """
CREATE OR REPLACE FUNCTION keyledger_audit_append_only() RETURNS trigger AS $$
BEGIN
    -- Nested: PL/pgSQL does not short-circuit, and only audit_event has a seq.
    IF TG_OP = 'UPDATE' AND TG_TABLE_NAME = 'audit_event' THEN
        -- Sealing: a NULL seq is filled in, nothing else changes.
        IF OLD.seq IS NULL AND NEW.seq IS NOT NULL
           AND NEW.id = OLD.id
           AND NEW.event_id = OLD.event_id
           AND NEW.created_at = OLD.created_at
           AND NEW.action = OLD.action
           AND NEW.sensitivity = OLD.sensitivity
           AND NEW.actor = OLD.actor
           AND NEW.actor_ip IS NOT DISTINCT FROM OLD.actor_ip
           AND NEW.target IS NOT DISTINCT FROM OLD.target
           AND NEW.outcome = OLD.outcome
           AND NEW.details = OLD.details
           AND NEW.canonical IS NOT DISTINCT FROM OLD.canonical
           AND NEW.leaf_hash = OLD.leaf_hash THEN
            RETURN NEW;
        END IF;
        -- Pruning: a sealed event loses its payload, keeps its place and leaf hash.
        IF OLD.seq IS NOT NULL AND NEW.seq = OLD.seq
           AND OLD.canonical IS NOT NULL AND NEW.canonical IS NULL
           AND NEW.id = OLD.id
           AND NEW.event_id = OLD.event_id
           AND NEW.created_at = OLD.created_at
           AND NEW.action = OLD.action
           AND NEW.sensitivity = OLD.sensitivity
           AND NEW.outcome = OLD.outcome
           AND NEW.actor = ''
           AND NEW.actor_ip IS NULL
           AND NEW.target IS NULL
           AND NEW.details = '{}'
           AND NEW.leaf_hash = OLD.leaf_hash THEN
            RETURN NEW;
        END IF;
    END IF;
    RAISE EXCEPTION 'keyledger: % on % refused, the audit log is append-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
"""


def upgrade():
    op.create_table(
        "audit_cosignature",
        sa.Column("checkpoint_idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("witness", sa.String(length=255), nullable=False),
        sa.Column("key_id", sa.String(length=8), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column("signature", sa.LargeBinary(length=64), nullable=False),
        sa.PrimaryKeyConstraint("checkpoint_idx", "witness", name=op.f("pk_audit_cosignature")),
    )
    with op.batch_alter_table("audit_state", schema=None) as batch_op:
        batch_op.add_column(sa.Column("halted", sa.Text(), nullable=True))
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.alter_column("canonical", existing_type=sa.LargeBinary(), nullable=True)
    op.create_index(
        "ix_audit_event_leaf_hash",
        "audit_event",
        ["leaf_hash"],
        unique=False,
        sqlite_where=sa.text("seq IS NOT NULL"),
        postgresql_where=sa.text("seq IS NOT NULL"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(TRIGGER_FUNCTION)
        op.execute(
            "CREATE TRIGGER audit_cosignature_append_only BEFORE UPDATE OR DELETE ON "
            "audit_cosignature FOR EACH ROW EXECUTE FUNCTION keyledger_audit_append_only()"
        )


def downgrade():
    op.drop_index("ix_audit_event_leaf_hash", table_name="audit_event")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_cosignature_append_only ON audit_cosignature")
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.alter_column("canonical", existing_type=sa.LargeBinary(), nullable=False)
    with op.batch_alter_table("audit_state", schema=None) as batch_op:
        batch_op.drop_column("halted")
    op.drop_table("audit_cosignature")
