"""customers' personal data is redacted after a while, or at once on request

Revision ID: 0012_personal_data
Revises: 0011_notification_secret_overlap

- ``transactions.personal_data_redacted_at``: when the customer's names, e-mails, phones and
  addresses were removed from the transaction and what hangs off it (storage.personal_data).
- ``transactions.erasure_requested_at``: an erasure request (`connxt customers erase`) named
  this open transaction; it is redacted as soon as it ends.
- Indexes for the retention sweep (ended transactions not yet redacted, oldest first: a row
  enters it when it ends and leaves it when redacted), for erasures waiting on open
  transactions, and to find a brand's customer's transactions at once.
"""

import sqlalchemy as sa
from alembic import op

from storage.schema_changes import create_index_concurrently, drop_index_concurrently

revision = "0012_personal_data"
down_revision = "0011_notification_secret_overlap"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "transactions", sa.Column("personal_data_redacted_at", sa.DateTime(timezone=True))
    )
    op.add_column("transactions", sa.Column("erasure_requested_at", sa.DateTime(timezone=True)))
    create_index_concurrently(
        "ix_transactions_personal_data_due",
        "transactions",
        ["updated_at"],
        where="personal_data_redacted_at IS NULL AND status IN ('SUCCESS','FAILED','REJECTED')",
    )
    create_index_concurrently(
        "ix_transactions_erasure_pending",
        "transactions",
        ["erasure_requested_at"],
        where="erasure_requested_at IS NOT NULL AND personal_data_redacted_at IS NULL",
    )
    create_index_concurrently(
        "ix_transactions_customer",
        "transactions",
        ["brand_id", "user_id"],
        where="user_id IS NOT NULL",
    )


def downgrade() -> None:
    drop_index_concurrently("ix_transactions_customer")
    drop_index_concurrently("ix_transactions_erasure_pending")
    drop_index_concurrently("ix_transactions_personal_data_due")
    op.drop_column("transactions", "erasure_requested_at")
    op.drop_column("transactions", "personal_data_redacted_at")
