"""usage events and roll-ups (placeholder, filled by the usage work)

Revision ID: 0003
Revises: 0002
"""

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
