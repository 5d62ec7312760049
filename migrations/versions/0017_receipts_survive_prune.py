"""receipts survive prune: pruning keeps a key event's target (`key:<public id>`, not
personal data), so a key's receipts still find their events; the PostgreSQL
append-only trigger function allows exactly that (0006's, one condition changed)

Revision ID: 0017
Revises: 0016
"""

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

_FUNCTION = """
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
           PRUNED_TARGET
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
# 0006's rule: a pruned event's target is emptied.
FUNCTION_0006 = _FUNCTION.replace("PRUNED_TARGET", "AND NEW.target IS NULL")
# 0017's: a key event keeps its target, so its receipts still find it (not personal data).
FUNCTION_0017 = _FUNCTION.replace(
    "PRUNED_TARGET",
    "AND (NEW.target IS NULL OR (NEW.target = OLD.target AND OLD.target LIKE 'key:%'))",
)


def upgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute(FUNCTION_0017)


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute(FUNCTION_0006)
