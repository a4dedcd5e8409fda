"""transactions held for an operator's review

Revision ID: 0002_review
Revises: 0001

A transaction the PSP settled for other money (``amount_mismatch``), or reported paid after
it failed (``late_success``), waits for an operator. The review is columns beside the
status, never a status of its own, so terminal statuses keep their one rule: they never
change. ``review_reason`` stays after the decision; ``review_resolved_at`` says it was made.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002_review"
down_revision = "0001"
branch_labels = None
depends_on = None

_UNRESOLVED = "review_reason IS NOT NULL AND review_resolved_at IS NULL"


def upgrade() -> None:
    op.add_column("transactions", sa.Column("review_reason", sa.String(length=40)))
    op.add_column(
        "transactions", sa.Column("review_detail", postgresql.JSONB(astext_type=sa.Text()))
    )
    op.add_column("transactions", sa.Column("review_opened_at", sa.DateTime(timezone=True)))
    op.add_column("transactions", sa.Column("review_resolved_at", sa.DateTime(timezone=True)))
    op.add_column("transactions", sa.Column("review_resolution", sa.String(length=20)))
    op.add_column("transactions", sa.Column("review_note", sa.Text()))
    # `GET /transactions?review=true`: few rows, read newest first per tenant.
    op.create_index(
        "ix_transactions_review_open",
        "transactions",
        ["environment_id", "created_at", "id"],
        unique=False,
        postgresql_where=sa.text(_UNRESOLVED),
    )


def downgrade() -> None:
    op.drop_index("ix_transactions_review_open", table_name="transactions")
    for column in (
        "review_note",
        "review_resolution",
        "review_resolved_at",
        "review_opened_at",
        "review_detail",
        "review_reason",
    ):
        op.drop_column("transactions", column)
