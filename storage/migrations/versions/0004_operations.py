"""flow actions that can be disabled

Revision ID: 0004_operations
Revises: 0003_volume

- ``flow_actions.status``: an action can be taken out of service on its own
  (`connxt catalog disable --target NAME --action NAME`), as a whole target already could.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_operations"
down_revision = "0003_volume"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "flow_actions",
        sa.Column("status", sa.String(length=20), server_default="ENABLED", nullable=False),
    )


def downgrade() -> None:
    op.drop_column("flow_actions", "status")
