"""lanes in the outbox, the sweep's index, no duplicate status index

Revision ID: 0003_volume
Revises: 0002_review

- ``outbox.queue``: the lane a message goes to (a PSP's own queue for PSP calls). Rows are
  deleted once published, so ``sent_at`` and its partial index go; the relay reads by id.
- ``ix_transactions_due``: the reconciliation sweep's query (open transactions whose next
  look is due, soonest first) reads an index of exactly those rows, however many
  finished transactions the table holds.
- ``ix_transactions_status`` duplicated the leading column of ``ix_transactions_open``.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_volume"
down_revision = "0002_review"
branch_labels = None
depends_on = None

_OPEN = "status IN ('CREATED','INITIATED','PG_ACCEPTED')"


def upgrade() -> None:
    op.add_column("outbox", sa.Column("queue", sa.String(length=100)))
    op.execute("DELETE FROM outbox WHERE sent_at IS NOT NULL")
    op.drop_index("ix_outbox_unsent", table_name="outbox")
    op.drop_column("outbox", "sent_at")
    op.create_index(
        "ix_outbox_created", "outbox", ["created_at"], postgresql_where=sa.text("parked_at IS NULL")
    )
    op.create_index(
        "ix_transactions_due",
        "transactions",
        ["next_inquiry_at"],
        postgresql_where=sa.text(_OPEN),
    )
    op.drop_index("ix_transactions_status", table_name="transactions")


def downgrade() -> None:
    op.create_index("ix_transactions_status", "transactions", ["status"])
    op.drop_index("ix_transactions_due", table_name="transactions")
    op.drop_index("ix_outbox_created", table_name="outbox")
    op.add_column("outbox", sa.Column("sent_at", sa.DateTime(timezone=True)))
    op.create_index(
        "ix_outbox_unsent", "outbox", ["created_at"], postgresql_where=sa.text("sent_at IS NULL")
    )
    op.drop_column("outbox", "queue")
