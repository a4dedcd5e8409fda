"""Transactions held for an operator: the review beside the status, never instead of it.

A PSP that settles other money than we asked for (``amount_mismatch``) leaves the
transaction open and held; a PSP success after the transaction failed (``late_success``)
leaves it FAILED. Either way the review is opened once, in the caller's database
transaction and with a compare-and-set on ``version``: the review columns, one event row
named after the reason, and one merchant notification (unique per transaction and type), so
a duplicate webhook or a second inquiry can never open it twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy import ColumnElement, func, update
from sqlalchemy.orm import Session

from connxt import tasks
from connxt.metrics import REVIEWS
from state_machine import Review, Source, Status
from storage.models import Transaction, TransactionEvent
from storage.notifications import ensure_notification
from storage.outbox import add_message

log = structlog.get_logger()

# The merchant's notification type for each reason a transaction is held.
NOTIFICATION_TYPES = {
    Review.AMOUNT_MISMATCH: "transaction.review",
    Review.LATE_SUCCESS: "transaction.late_success",
}


@dataclass(frozen=True)
class Reported:
    """The money as the PSP stated it; None for what it did not say."""

    amount: Decimal | None
    currency: str | None
    psp_state: str | None = None

    def matches(self, txn: Transaction) -> bool:
        """Exactly the transaction's money: equal amounts (5.00 is 5), the same currency
        in any case. A PSP that does not say how much cannot be taken at its word."""
        if self.amount is None or self.currency is None:
            return False
        return self.amount == txn.amount and self.currency.strip().upper() == txn.currency

    def as_detail(self, source: Source) -> dict[str, Any]:
        # Text, not a JSON number: JSONB would keep it, but every reader would parse floats.
        return {
            "pspAmount": None if self.amount is None else str(self.amount),
            "pspCurrency": self.currency,
            "pspState": self.psp_state,
            "source": source.value,
        }


def is_held(txn: Transaction) -> bool:
    """Waiting for an operator's decision."""
    return txn.review_reason is not None and txn.review_resolved_at is None


def unresolved() -> ColumnElement[bool]:
    """SQL for is_held(); matches the partial index ix_transactions_review_open."""
    return Transaction.review_reason.is_not(None) & Transaction.review_resolved_at.is_(None)


def open_review(
    session: Session, txn: Transaction, review: Review, source: Source, reported: Reported | None
) -> bool:
    """Hold ``txn`` (as read, at its version) for an operator; flushes, never commits.

    False when another writer changed the row first: the caller reloads and decides again.
    """
    detail = (reported or Reported(None, None)).as_detail(source)
    moved = session.execute(
        update(Transaction)
        .where(Transaction.id == txn.id, Transaction.version == txn.version)
        .values(
            review_reason=review.value,
            review_detail=detail,
            review_opened_at=func.now(),
            # No more scheduled looks: an open held transaction waits for the operator.
            next_inquiry_at=None,
            version=txn.version + 1,
            updated_at=func.now(),
        )
    ).rowcount
    if moved == 0:
        return False
    session.add(
        TransactionEvent(
            txn_id=txn.id,
            from_status=txn.status,
            to_status=txn.status,
            source=source.value,
            reason=review.value,
        )
    )
    notification_id = ensure_notification(
        session, txn.id, txn.environment_id, NOTIFICATION_TYPES[review]
    )
    add_message(session, tasks.NOTIFY, {"txn_id": txn.id, "notification_id": notification_id})
    session.flush()
    REVIEWS.labels(review.value, source.value).inc()
    log.warning(
        "transaction.held_for_review",
        txn_id=txn.id,
        review=review.value,
        status=txn.status,
        source=source.value,
        psp_amount=detail["pspAmount"],
        psp_currency=detail["pspCurrency"],
    )
    return True


def record_decision(
    session: Session, txn: Transaction, decided: Status, note: str, reason: str
) -> bool:
    """Close the review of a terminal transaction: its status stays, the decision and its
    event row are recorded. False when another writer changed the row first."""
    moved = session.execute(
        update(Transaction)
        .where(
            Transaction.id == txn.id,
            Transaction.version == txn.version,
            Transaction.review_resolved_at.is_(None),
        )
        .values(**resolution(decided, note), version=txn.version + 1, updated_at=func.now())
    ).rowcount
    if moved == 0:
        return False
    session.add(
        TransactionEvent(
            txn_id=txn.id,
            from_status=txn.status,
            to_status=txn.status,
            source=Source.OPERATOR.value,
            reason=reason,
        )
    )
    session.flush()
    session.expire(txn)
    return True


def resolution(decided: Status, note: str) -> dict[str, Any]:
    """The column values that close a review."""
    return {
        "review_resolved_at": datetime.now(UTC),
        "review_resolution": decided.value,
        "review_note": note,
    }
