"""tenant listings on an index whose keys are the tenant and the time only

Revision ID: 0015_listing_index_by_time
Revises: 0014_notification_per_run

``ix_transactions_tenant_created`` keyed (environment, created_at, id). With the id a key
column, PostgreSQL can answer ``id = $1`` by scanning the whole index with the id as an
index condition, and when the table's statistics say it is small (taken before a burst, or
over pages of dead rows) that scan costs the same as the primary key to the planner: the
workers' batch transitions were seen to pick it (tests/integration/test_growth.py), a full
index scan per transaction once the table is large. The id now rides along as an INCLUDE
column: listings still page by (created_at, id), ties broken by an incremental sort, and
only the primary key can look a transaction up by id.

The old index is dropped once its successor is built; the previous release's listing reads
the new one as well as the old, so nothing it runs depends on the name.
"""

from storage.schema_changes import create_index_concurrently, drop_index_concurrently

revision = "0015_listing_index_by_time"
down_revision = "0014_notification_per_run"
branch_labels = None
depends_on = None

# Dropping ix_transactions_tenant_created contracts nothing v0.1.0 reads by name: its
# listing query is served by ix_transactions_tenant_listing.
contract_after = "v0.1.0"


def upgrade() -> None:
    create_index_concurrently(
        "ix_transactions_tenant_listing",
        "transactions",
        ["environment_id", "created_at"],
        include=["id"],
    )
    drop_index_concurrently("ix_transactions_tenant_created")


def downgrade() -> None:
    create_index_concurrently(
        "ix_transactions_tenant_created", "transactions", ["environment_id", "created_at", "id"]
    )
    drop_index_concurrently("ix_transactions_tenant_listing")
