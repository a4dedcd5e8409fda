"""The public shape of a transaction: `GET /transactions/{id}` and merchant notifications."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from storage.models import Transaction, TransactionEvent


def api_time(value: datetime | None) -> str | None:
    """The reference's timestamps: UTC, seconds, no offset (`2025-12-12T16:56:36`)."""
    if value is None:
        return None
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds")


def amount_text(txn: Transaction, places: int) -> str:
    return f"{txn.amount:.{places}f}"


def transaction_view(txn: Transaction, places: int = 2) -> dict[str, Any]:
    return {
        "txnId": txn.id,
        "status": txn.status,
        "pspId": txn.psp_id,
        "pspTxnId": txn.psp_txn_id,
        "flowActionId": txn.flow_action_id,
        "flowTargetId": txn.flow_target_id,
        "transactionType": txn.transaction_type,
        # A string, so no client's float parser can round money.
        "txnAmount": amount_text(txn, places),
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
