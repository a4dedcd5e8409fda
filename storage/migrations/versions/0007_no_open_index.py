"""no index of open transactions by status and update time

Revision ID: 0007_no_open_index
Revises: 0006_notification_names

``ix_transactions_open`` (status, updated_at, open rows only) served no query any more: the
reconciliation sweep reads ``ix_transactions_due``, tenant listings
``ix_transactions_tenant_created``. Every transition writes ``updated_at``, so the index
cost an entry per insert and per transition on the hottest table, for nothing.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_no_open_index"
down_revision = "0006_notification_names"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_transactions_open", table_name="transactions")


def downgrade() -> None:
    op.create_index(
        "ix_transactions_open",
        "transactions",
        ["status", "updated_at"],
        postgresql_where=sa.text("status IN ('CREATED','INITIATED','PG_ACCEPTED')"),
    )
