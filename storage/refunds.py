"""A refund's parent: the deposit it returns money from, locked while the refund is
checked and written."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import Transaction


def lock_parent(
    session: Session, brand_id: str, environment_id: str, parent_txn_id: str
) -> Transaction | None:
    """The tenant's transaction ``parent_txn_id``, row-locked until the caller's database
    transaction ends; None when the tenant has no such transaction. The lock serializes
    concurrent refunds of one deposit: the remainder computed under it (see
    storage.transactions.refunded_total) cannot be spent twice."""
    return session.scalar(
        select(Transaction)
        .where(
            Transaction.id == parent_txn_id,
            Transaction.brand_id == brand_id,
            Transaction.environment_id == environment_id,
        )
        .with_for_update()
    )
