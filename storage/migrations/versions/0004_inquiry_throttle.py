"""when unauthenticated traffic last had the PSP asked about a transaction

Revision ID: 0004_inquiry_throttle
Revises: 0003_volume

- ``transactions.inquiry_requested_at``: a customer's redirect or an unverified webhook
  asks the PSP about the transaction at most once per window (storage.inquiries); this is
  when it last did. Nullable without a default: adding it rewrites no rows.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_inquiry_throttle"
down_revision = "0003_volume"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("transactions", sa.Column("inquiry_requested_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    op.drop_column("transactions", "inquiry_requested_at")
