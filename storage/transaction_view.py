"""The public shape of a transaction and of what hangs off it (its review, status history,
PSP webhooks and merchant notifications): the one place each is shaped, for the API
(`GET /transactions/...`), merchant notifications and the CLI. The response models that
document these shapes are in api_gateway/transactions/schemas.py and
api_gateway/notifications/schemas.py; the test suite checks every answer against them.

Plain dicts rather than the models themselves: a notification or a page of 200
transactions is written without building and validating a model per row."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson

from storage.models import (
    InboxMessage,
    Notification,
    NotificationAttempt,
    Transaction,
    TransactionEvent,
)


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


def transaction_view(txn: Transaction, places: int = 2) -> dict[str, Any]:
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
        "parentTxnId": txn.parent_txn_id,
        "orderId": txn.order_id,
        "userId": txn.user_id,
        "navigation": txn.navigation,
        "error": txn.error,
        "createdAt": api_time(txn.created_at),
        "updatedAt": api_time(txn.updated_at),
        "review": review_view(txn),
    }


def review_view(txn: Transaction) -> dict[str, Any] | None:
    """Why the transaction was held for an operator, what the PSP reported, and the
    operator's decision; None when it was never held (storage.reviews)."""
    if txn.review_reason is None:
        return None
    detail = txn.review_detail or {}
    return {
        "reason": txn.review_reason,
        "pspAmount": detail.get("pspAmount"),
        "pspCurrency": detail.get("pspCurrency"),
        "pspState": detail.get("pspState"),
        "source": detail.get("source"),
        "openedAt": api_time(txn.review_opened_at),
        "resolvedAt": api_time(txn.review_resolved_at),
        "resolution": txn.review_resolution,
        "note": txn.review_note,
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
