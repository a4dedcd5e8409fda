"""one reconciliation.completed notification per run

Revision ID: 0014_notification_per_run
Revises: 0013_reconciliation

A notification about no transaction (``reconciliation.completed``, keyed by its run) has no
transaction and no review: under ``uq_notifications_txn_event`` (transaction, event type,
review; NULLs not distinct) the second run's notification would collide with the first. The
constraint widens to take the run in, on an index built concurrently first; it keeps its
name, so the previous release's ``ON CONFLICT ON CONSTRAINT uq_notifications_txn_event``
finds it, and what that release inserts (no review, no run) is still one per (transaction,
event type).
"""

from storage.schema_changes import create_index_concurrently, swap_unique_constraint

revision = "0014_notification_per_run"
down_revision = "0013_reconciliation"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_index_concurrently(
        "uq_notifications_txn_event_review_run",
        "notifications",
        ["txn_id", "event_type", "review_id", "recon_run_id"],
        unique=True,
        nulls_not_distinct=True,
    )
    swap_unique_constraint(
        "notifications", "uq_notifications_txn_event", "uq_notifications_txn_event_review_run"
    )


def downgrade() -> None:
    # Only while no two runs' notifications exist: the narrower constraint refuses them.
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
