"""flow actions that can be disabled; the notify sweep's lease; indexes for retention

Revision ID: 0005_operations
Revises: 0004_inquiry_throttle

- ``flow_actions.status``: an action can be taken out of service on its own
  (`connxt catalog disable --target NAME --action NAME`), as a whole target already could.
- ``notifications.lease_token``: the notify sweep leases what it claims, and only the
  delivery it sent may use that lease (storage.notifications.claim_due).
- Retention (storage.retention) deletes old rows oldest first in small batches; each
  table gets the index that finds them without reading the rest: processed inbox rows by
  ``processed_at`` (unprocessed ones are never in it), idempotency keys and notification
  attempts by ``created_at``.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_operations"
down_revision = "0004_inquiry_throttle"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "flow_actions",
        sa.Column("status", sa.String(length=20), server_default="ENABLED", nullable=False),
    )
    op.add_column("notifications", sa.Column("lease_token", sa.String(length=32)))
    op.create_index(
        "ix_inbox_processed",
        "inbox",
        ["processed_at"],
        postgresql_where=sa.text("processed_at IS NOT NULL"),
    )
    op.create_index("ix_idempotency_keys_created", "idempotency_keys", ["created_at"])
    op.create_index("ix_notification_attempts_created", "notification_attempts", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_notification_attempts_created", table_name="notification_attempts")
    op.drop_index("ix_idempotency_keys_created", table_name="idempotency_keys")
    op.drop_index("ix_inbox_processed", table_name="inbox")
    op.drop_column("notifications", "lease_token")
    op.drop_column("flow_actions", "status")
