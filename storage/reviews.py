"""Transactions held for an operator: the review beside the status, never instead of it.

A PSP that settles other money than we asked for (``amount_mismatch``) leaves the
transaction open and held; a PSP success after the transaction failed (``late_success``)
leaves it FAILED. A transaction can have several reviews over time, one per distinct PSP
report (the PSP's payment, its state and its money: ``report_key``), each a row of
``transaction_reviews`` with its own merchant notification and its own decision: a second
late success after the first was decided is held and told again, while a repeat of a
report (a duplicate webhook, a second inquiry) is no new review. A review is opened in the
caller's database transaction with a compare-and-set on ``version``.

The transaction's ``review_*`` columns show one review: the oldest still waiting, or the
last decided. They are what "held" means to every path (``is_held``, ``unresolved``) and
what the previous release reads. Reviews that wait behind another are decided in turn.

Deciding is an operator's act, recorded with who and why (storage.review_decisions).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import structlog
from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from connxt import tasks
from connxt.ids import random_id
from connxt.metrics import REVIEWS
from state_machine import Review, Source
from storage.models import Notification, Transaction, TransactionReview
from storage.notifications import add_review_notification
from storage.outbox import add_message
from storage.status_writes import Seen, record_unmoved, write_at_version

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
    # The PSP's id of the payment it reports on; None: the transaction's own.
    psp_txn_id: str | None = None

    def matches(self, txn: Seen) -> bool:
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


def report_key(payment: str | None, detail: dict[str, Any]) -> str:
    """What makes two reports one: the same PSP payment, state and money (5.00 is 5, usd
    is USD). Where and how it came (webhook, inquiry) does not count."""
    amount = detail.get("pspAmount")
    try:
        amount = None if amount is None else format(Decimal(amount).normalize(), "f")
    except (InvalidOperation, ValueError):
        pass  # kept as the PSP wrote it
    currency = (detail.get("pspCurrency") or "").strip().upper() or None
    key = json.dumps([payment, detail.get("pspState"), amount, currency], ensure_ascii=False)
    return key if len(key) <= 400 else "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def is_held(txn: Any) -> bool:
    """Waiting for an operator's decision."""
    return txn.review_reason is not None and txn.review_resolved_at is None


def unresolved() -> ColumnElement[bool]:
    """SQL for is_held(); matches the partial index ix_transactions_review_open."""
    return Transaction.review_reason.is_not(None) & Transaction.review_resolved_at.is_(None)


# -- opening ---------------------------------------------------------------------------------


def open_review(
    session: Session, txn: Any, review: Review, source: Source, reported: Reported | None
) -> bool:
    """Hold ``txn`` (as read, at its version; storage.status_writes.Seen) for an operator,
    unless this very report was reviewed before; flushes, never commits.

    False when another writer changed the row first: the caller reloads and decides again.
    """
    reported = reported or Reported(None, None)
    # Adopted first, so that a repeat of the report it shows counts as one.
    payment = adopt_shown(session, txn.id)
    detail = {**reported.as_detail(source), "pspTxnId": reported.psp_txn_id or payment}
    key = report_key(detail["pspTxnId"], detail)
    if _reported_before(session, txn.id, key):
        return True  # a repeat: the review it opened is there, and says so
    values: dict[str, Any] = {}
    if not is_held(txn):  # nothing waits: the row shows this one (else it waits its turn)
        values = {
            "review_reason": review.value,
            "review_detail": detail,
            "review_opened_at": func.now(),
            **undecided(),
        }
    # No more scheduled looks: an open held transaction waits for the operator.
    if not write_at_version(session, txn, {**values, "next_inquiry_at": None}):
        return False
    review_id = random_id("rev")
    session.add(
        TransactionReview(
            id=review_id,
            txn_id=txn.id,
            reason=review.value,
            report_key=key,
            detail=detail,
        )
    )
    record_unmoved(session, txn, source, review.value)  # flushes the review row too
    notification_id = add_review_notification(
        session, txn.id, txn.environment_id, NOTIFICATION_TYPES[review], review_id
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
        waiting_behind_another=not values,
    )
    return True


def undecided() -> dict[str, Any]:
    return {
        "review_resolved_at": None,
        "review_resolution": None,
        "review_note": None,
        "review_resolved_by": None,
    }


def _reported_before(session: Session, txn_id: str, key: str) -> bool:
    found = session.scalar(
        select(TransactionReview.id).where(
            TransactionReview.txn_id == txn_id, TransactionReview.report_key == key
        )
    )
    return found is not None


def adopt_shown(session: Session, txn_id: str) -> str | None:
    """The transaction's PSP payment id; and the review its columns show, given a row of
    its own if it has none (it was opened before reviews had rows, or by the previous
    release during a rolling update), with its notification linked to it."""
    row = session.execute(
        select(
            Transaction.psp_txn_id,
            Transaction.review_reason,
            Transaction.review_detail,
            Transaction.review_opened_at,
            Transaction.review_resolved_at,
            Transaction.review_resolution,
            Transaction.review_note,
            Transaction.review_resolved_by,
            select(TransactionReview.id)
            .where(TransactionReview.txn_id == txn_id)
            .limit(1)
            .scalar_subquery(),
        ).where(Transaction.id == txn_id)
    ).one()
    psp_txn_id: str | None = row.psp_txn_id
    if row.review_reason is None or row[-1] is not None:
        return psp_txn_id
    review_id = f"rev_{txn_id.removeprefix('txn_')}"[:40]
    detail = row.review_detail or {}
    session.execute(
        insert(TransactionReview)
        .values(
            id=review_id,
            txn_id=txn_id,
            reason=row.review_reason,
            report_key=report_key(row.psp_txn_id, detail),
            detail=detail,
            opened_at=row.review_opened_at or func.now(),
            resolved_at=row.review_resolved_at,
            resolution=row.review_resolution,
            note=row.review_note,
            resolved_by=row.review_resolved_by,
        )
        .on_conflict_do_nothing()
    )
    session.execute(
        update(Notification)
        .where(
            Notification.txn_id == txn_id,
            Notification.event_type == NOTIFICATION_TYPES[Review(row.review_reason)],
            Notification.review_id.is_(None),
        )
        .values(review_id=review_id)
    )
    return psp_txn_id


def reviews_of(session: Session, txn_id: str) -> list[TransactionReview]:
    """Every review of the transaction that has a row, oldest first (one opened before
    reviews had rows is only in the transaction's columns until it is touched again)."""
    return list(
        session.scalars(
            select(TransactionReview)
            .where(TransactionReview.txn_id == txn_id)
            .order_by(TransactionReview.opened_at, TransactionReview.id)
        )
    )
