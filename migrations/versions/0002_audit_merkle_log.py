"""audit merkle log: seq assigned by the sealer, tree state, checkpoints, node cache

Revision ID: 0002
Revises: 0001

Moves the hash chain of 0001 to an RFC 6962 Merkle log. Existing events keep their
seq and leaf hash; their tree (frontier and node cache) is rebuilt here, and the
next seal signs the first checkpoint. On PostgreSQL a trigger makes the audit
tables append-only (the sealer may only fill in a NULL seq).
"""

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

EMPTY_ROOT = hashlib.sha256(b"").digest()
NODE_MIN_LEVEL = 8

TRIGGER_FUNCTION = """
CREATE OR REPLACE FUNCTION keyledger_audit_append_only() RETURNS trigger AS $$
BEGIN
    -- Nested: PL/pgSQL does not short-circuit, and only audit_event has a seq.
    IF TG_OP = 'UPDATE' AND TG_TABLE_NAME = 'audit_event' THEN
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
           AND NEW.canonical = OLD.canonical
           AND NEW.leaf_hash = OLD.leaf_hash THEN
            RETURN NEW;
        END IF;
    END IF;
    RAISE EXCEPTION 'keyledger: % on % refused, the audit log is append-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
"""
PROTECTED = ("audit_event", "audit_checkpoint", "audit_node")


def _node(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def _rebuild_tree(conn):
    """Frontier, root and node cache for the events 0001 already sealed."""
    size = 0
    hashes = []
    nodes = []
    rows = conn.execute(sa.text("SELECT leaf_hash FROM audit_event ORDER BY seq"))
    for (leaf,) in rows:
        h = bytes(leaf)
        s = size
        level = 0
        while s & 1:
            h = _node(hashes.pop(), h)
            s >>= 1
            level += 1
            if level >= NODE_MIN_LEVEL:
                nodes.append({"level": level, "idx": s, "hash": h})
        hashes.append(h)
        size += 1
    root = EMPTY_ROOT
    if hashes:
        root = hashes[-1]
        for h in reversed(hashes[:-1]):
            root = _node(h, root)
    return size, root, b"".join(hashes), nodes


def upgrade():
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.alter_column("seq", existing_type=sa.BigInteger(), nullable=True)
        batch_op.drop_column("chain_hash")
    op.create_index(
        "ix_audit_event_pending",
        "audit_event",
        ["id"],
        unique=False,
        sqlite_where=sa.text("seq IS NULL"),
        postgresql_where=sa.text("seq IS NULL"),
    )

    # The chain head means nothing to a Merkle log: the state row is rebuilt below.
    op.drop_table("audit_state")
    op.create_table(
        "audit_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("root", sa.LargeBinary(length=32), nullable=False),
        sa.Column("frontier", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_state")),
    )

    op.create_table(
        "audit_checkpoint",
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("tree_size", sa.BigInteger(), nullable=False),
        sa.Column("root_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key_id", sa.String(length=16), nullable=False),
        sa.Column("note", sa.LargeBinary(), nullable=False),
        sa.Column("signature", sa.LargeBinary(length=64), nullable=False),
        sa.PrimaryKeyConstraint("idx", name=op.f("pk_audit_checkpoint")),
    )
    with op.batch_alter_table("audit_checkpoint", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_audit_checkpoint_tree_size"), ["tree_size"], unique=False
        )

    op.create_table(
        "audit_node",
        sa.Column("level", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("level", "idx", name=op.f("pk_audit_node")),
    )

    op.create_table(
        "audit_verification",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("actor", sa.String(length=320), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("checked", sa.BigInteger(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=True),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.Column("checkpoints", sa.BigInteger(), nullable=False),
        sa.Column("root", sa.String(length=64), nullable=True),
        sa.Column("last_checkpoint_time", sa.String(length=32), nullable=True),
        sa.Column("bad_seq", sa.BigInteger(), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=True),
        sa.Column("problem", sa.Text(), nullable=True),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_verification")),
    )

    conn = op.get_bind()
    size, root, frontier, nodes = _rebuild_tree(conn)
    conn.execute(
        sa.text("INSERT INTO audit_state (id, size, root, frontier) VALUES (1, :s, :r, :f)"),
        {"s": size, "r": root, "f": frontier},
    )
    if nodes:
        conn.execute(
            sa.text("INSERT INTO audit_node (level, idx, hash) VALUES (:level, :idx, :hash)"),
            nodes,
        )

    if conn.dialect.name == "postgresql":
        op.execute(TRIGGER_FUNCTION)
        for table in PROTECTED:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION keyledger_audit_append_only()"
            )


def downgrade():
    conn = op.get_bind()
    if conn.dialect.name == "postgresql":
        for table in PROTECTED:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        op.execute("DROP FUNCTION IF EXISTS keyledger_audit_append_only()")
    pending = conn.execute(sa.text("SELECT count(*) FROM audit_event WHERE seq IS NULL")).scalar()
    if pending:
        raise RuntimeError(
            f"{pending} audit events are not sealed yet: run `flask audit checkpoint` first"
        )

    op.drop_table("audit_verification")
    op.drop_table("audit_node")
    with op.batch_alter_table("audit_checkpoint", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_checkpoint_tree_size"))
    op.drop_table("audit_checkpoint")
    op.drop_index("ix_audit_event_pending", table_name="audit_event")

    # Rebuild 0001's hash chain from the sealed leaves.
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.add_column(sa.Column("chain_hash", sa.LargeBinary(length=32), nullable=True))
    head = bytes(32)
    rows = conn.execute(sa.text("SELECT id, leaf_hash FROM audit_event ORDER BY seq")).all()
    for row_id, leaf in rows:
        head = hashlib.sha256(head + bytes(leaf)).digest()
        conn.execute(
            sa.text("UPDATE audit_event SET chain_hash = :h WHERE id = :i"), {"h": head, "i": row_id}
        )
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.alter_column("chain_hash", existing_type=sa.LargeBinary(length=32), nullable=False)
        batch_op.alter_column("seq", existing_type=sa.BigInteger(), nullable=False)

    op.drop_table("audit_state")
    op.create_table(
        "audit_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("head", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_state")),
    )
    conn.execute(
        sa.text("INSERT INTO audit_state (id, size, head) VALUES (1, :s, :h)"),
        {"s": len(rows), "h": head},
    )
