"""The public shape of a transaction and of what hangs off it (its review, status history,
PSP webhooks and merchant notifications): the one place each is shaped, for the API
(`GET /transactions/...`), merchant notifications and the CLI. The response models that
document these shapes are in api_gateway/transactions/schemas.py and
api_gateway/notifications/schemas.py; the test suite checks every answer against them.

Plain dicts rather than the models themselves: a notification or a page of 200
transactions is written without building and validating a model per row. A statement
that shapes a transaction without loading its ORM row (a delivery's lease, the Step 3
answer) reads ``VIEW_COLUMNS``, named here once, beside what reads them."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, TypeAlias

import orjson

from connectors.money import minor_units
from storage.captures import captured
from storage.models import (
    InboxMessage,
    Notification,
    NotificationAttempt,
    Transaction,
    TransactionEvent,
    TransactionReview,
)
from storage.transaction_columns import VIEW_COLUMNS

if TYPE_CHECKING:
    from storage.aio import IngressPool

# A transaction to shape: its ORM row, or only the columns the shape reads, as attributes
# of a namespace (a delivery's lease, the Step 3 answer: no ORM row is loaded).
ShownTransaction: TypeAlias = Transaction | SimpleNamespace

# A Step 3 answer shows the PSP's exchanges too (api_gateway.transactions.answers).
ANSWER_COLUMNS = (*VIEW_COLUMNS, "psp_meta")
_READ_ANSWER = f"SELECT {', '.join(ANSWER_COLUMNS)} FROM transactions WHERE id = %s"


async def read_for_answer(pool: IngressPool, txn_id: str) -> SimpleNamespace | None:
    """The transaction's ``ANSWER_COLUMNS`` on one of the ingress's own connections
    (storage.aio), without a thread hop; None when there is no such transaction."""
    async with pool.connection() as conn:
        cursor = await conn.execute(_READ_ANSWER, [txn_id])
        row = await cursor.fetchone()
    return None if row is None else SimpleNamespace(**row)


def api_time(value: datetime | None) -> str | None:
    """UTC to the second, with its zone (`2025-12-12T16:56:36Z`), as the envelope's own
    `timestamp`: a client must never have to guess the offset."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def amount_json(amount: Decimal, places: int) -> orjson.Fragment:
    """The amount as a JSON number, as the reference writes it, spelled digit for digit
    from the Decimal with the currency's places (`200.00`): never through a float, so no
    `0.30000000000000004` and no rounding of large amounts. Answers and notifications are
    written with orjson, which copies a Fragment as it is."""
    return orjson.Fragment(f"{amount:.{places}f}")


def exact_amount_text(amount: Decimal, places: int) -> str:
    """The amount with the currency's places, or more where it has them: a PSP's 5.005 USD
    is written 5.005, never rounded."""
    exponent = amount.normalize().as_tuple().exponent
    needed = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    return f"{amount:.{max(places, needed)}f}"


def transaction_view(txn: ShownTransaction, places: int = 2) -> dict[str, Any]:
    money = captured(txn)
    return {
        "txnId": txn.id,
        "status": txn.status,
        "pspId": txn.psp_id,
        "pspTxnId": txn.psp_txn_id,
        "flowActionId": txn.flow_action_id,
        "flowTargetId": txn.flow_target_id,
        "transactionType": txn.transaction_type,
        "txnAmount": amount_json(txn.amount, places),
        "txnCurrency": txn.currency,
        # What moved: the amount asked on a plain success, what the PSP took on a review
        # resolved SUCCESS (storage.captures); null while nothing did.
        "capturedAmount": (
            None
            if money is None
            else orjson.Fragment(exact_amount_text(money[0], minor_units(money[1])))
        ),
        "capturedCurrency": None if money is None else money[1],
        "parentTxnId": txn.parent_txn_id,
        "orderId": txn.order_id,
        "userId": txn.user_id,
        "navigation": txn.navigation,
        "error": txn.error,
        "createdAt": api_time(txn.created_at),
        "updatedAt": api_time(txn.updated_at),
        "review": review_view(txn),
    }


def review_view(txn: ShownTransaction) -> dict[str, Any] | None:
    """Why the transaction was held for an operator, what the PSP reported, and the
    operator's decision: the review waiting, or the last decided (storage.reviews); None
    when it was never held."""
    if txn.review_reason is None:
        return None
    return _review(
        txn.review_reason,
        txn.review_detail,
        txn.review_opened_at,
        txn.review_resolved_at,
        txn.review_resolution,
        txn.review_note,
        txn.review_resolved_by,
    )


def review_row_view(review: TransactionReview) -> dict[str, Any]:
    """One of a transaction's reviews (every one it had: storage.reviews.reviews_of)."""
    return _review(
        review.reason,
        review.detail,
        review.opened_at,
        review.resolved_at,
        review.resolution,
        review.note,
        review.resolved_by,
    )


def _review(
    reason: str,
    detail: dict[str, Any] | None,
    opened_at: datetime | None,
    resolved_at: datetime | None,
    resolution: str | None,
    note: str | None,
    resolved_by: str | None,
) -> dict[str, Any]:
    detail = detail or {}
    return {
        "reason": reason,
        "pspAmount": detail.get("pspAmount"),
        "pspCurrency": detail.get("pspCurrency"),
        "pspState": detail.get("pspState"),
        "source": detail.get("source"),
        "openedAt": api_time(opened_at),
        "resolvedAt": api_time(resolved_at),
        "resolution": resolution,
        "note": note,
        "resolvedBy": resolved_by,
    }


def event_view(event: TransactionEvent) -> dict[str, Any]:
    return {
        "fromStatus": event.from_status,
        "toStatus": event.to_status,
        "source": event.source,
        "reason": event.reason,
        "createdAt": api_time(event.created_at),
    }


def webhook_view(message: InboxMessage) -> dict[str, Any]:
    return {
        "id": message.id,
        "eventKey": message.event_key,
        "verified": message.verified,
        "attempts": message.attempts,
        "result": message.result,
        "receivedAt": api_time(message.received_at),
        "processedAt": api_time(message.processed_at),
        "parkedAt": api_time(message.parked_at),
    }


def notification_view(
    notification: Notification, attempts: list[NotificationAttempt]
) -> dict[str, Any]:
    return {
        "id": notification.id,
        "txnId": notification.txn_id,
        "eventType": notification.event_type,
        "status": notification.status,
        "attempts": notification.attempts,
        "nextAttemptAt": api_time(notification.next_attempt_at),
        "deliveredAt": api_time(notification.delivered_at),
        "createdAt": api_time(notification.created_at),
        "deliveries": [
            {
                "url": a.url,
                "statusCode": a.status_code,
                "error": a.error,
                "elapsedMs": float(a.elapsed_ms) if a.elapsed_ms is not None else None,
                "createdAt": api_time(a.created_at),
            }
            for a in attempts
        ],
    }
