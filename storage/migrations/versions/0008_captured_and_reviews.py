"""captured amounts; several reviews per transaction, each with its own notification

Revision ID: 0008_captured_and_reviews
Revises: 0007_no_open_index

- ``transactions.captured_amount`` / ``captured_currency``: what the PSP actually took, as
  an operator's SUCCESS decision recorded it (a PSP that settled 5.00 of 200.00). NULL on a
  plain SUCCESS, which captured exactly the amount asked (storage.captures).
- ``transactions.review_resolved_by``: who decided the review the row shows.
- ``transaction_reviews``: every review a transaction had, one per distinct PSP report (its
  payment, state and money: ``report_key``), so a second late success after the first was
  decided is held and told again, and a repeat of a report is not. The ``review_*`` columns
  of ``transactions`` stay the review being shown (the one waiting, or the last decided):
  the previous release reads them, and so do the hot paths' "held" checks.
- ``notifications.review_id``: a review's notification is keyed by its review. The unique
  constraint ``uq_notifications_txn_event`` (txn_id, event_type) would refuse a second
  ``transaction.late_success``; it is widened in place to (txn_id, event_type, review_id),
  NULLS NOT DISTINCT, on an index built concurrently first. The constraint keeps its name,
  so the previous release's ``ON CONFLICT ON CONSTRAINT uq_notifications_txn_event`` finds
  it during a rolling update, and what that release inserts (no review id) is still one
  per (transaction, event type).
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from storage.schema_changes import create_index_concurrently, swap_unique_constraint

revision = "0008_captured_and_reviews"
down_revision = "0007_no_open_index"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("transactions", sa.Column("captured_amount", sa.Numeric(24, 8)))
    op.add_column("transactions", sa.Column("captured_currency", sa.String(length=3)))
    op.add_column("transactions", sa.Column("review_resolved_by", sa.String(length=200)))
    op.create_table(
        "transaction_reviews",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("txn_id", sa.String(length=40), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("report_key", sa.String(length=400), nullable=False),
        sa.Column("detail", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "opened_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("resolved_at", sa.DateTime(timezone=True)),
        sa.Column("resolution", sa.String(length=20)),
        sa.Column("note", sa.Text()),
        sa.Column("resolved_by", sa.String(length=200)),
        sa.Column("captured_amount", sa.Numeric(24, 8)),
        sa.Column("captured_currency", sa.String(length=3)),
        sa.ForeignKeyConstraint(["txn_id"], ["transactions.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("txn_id", "report_key", name="uq_transaction_reviews_report"),
    )
    op.add_column("notifications", sa.Column("review_id", sa.String(length=40)))
    # Each step commits on its own: the validation scans notifications without holding
    # the lock that adding the key takes.
    with op.get_context().autocommit_block():
        op.execute(
            "ALTER TABLE notifications ADD CONSTRAINT fk_notifications_review_id "
            "FOREIGN KEY (review_id) REFERENCES transaction_reviews (id) NOT VALID"
        )
        op.execute("ALTER TABLE notifications VALIDATE CONSTRAINT fk_notifications_review_id")
    create_index_concurrently(
        "uq_notifications_txn_event_review",
        "notifications",
        ["txn_id", "event_type", "review_id"],
        unique=True,
        nulls_not_distinct=True,
    )
    swap_unique_constraint(
        "notifications", "uq_notifications_txn_event", "uq_notifications_txn_event_review"
    )


def downgrade() -> None:
    # Only while no transaction has a second notification of one type.
    op.execute(
        "ALTER TABLE notifications DROP CONSTRAINT uq_notifications_txn_event, "
        "ADD CONSTRAINT uq_notifications_txn_event UNIQUE (txn_id, event_type)"
    )
    op.drop_constraint("fk_notifications_review_id", "notifications", type_="foreignkey")
    op.drop_column("notifications", "review_id")
    op.drop_table("transaction_reviews")
    op.drop_column("transactions", "review_resolved_by")
    op.drop_column("transactions", "captured_currency")
    op.drop_column("transactions", "captured_amount")
