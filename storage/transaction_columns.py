"""The columns a transaction's public shape reads (storage.transaction_view), named once: a
statement that shapes a transaction without loading its ORM row (a delivery's lease, the
Step 3 answer) selects these. A module of its own so that what the view imports can use
them too."""

# What ``transaction_view`` and ``review_view`` read of a transaction.
VIEW_COLUMNS = (
    "id",
    "status",
    "psp_id",
    "psp_txn_id",
    "flow_action_id",
    "flow_target_id",
    "transaction_type",
    "amount",
    "currency",
    "parent_txn_id",
    "order_id",
    "user_id",
    "navigation",
    "error",
    "created_at",
    "updated_at",
    "review_reason",
    "review_detail",
    "review_opened_at",
    "review_resolved_at",
    "review_resolution",
    "review_note",
    "review_resolved_by",
    "captured_amount",
    "captured_currency",
)
