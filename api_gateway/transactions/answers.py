"""The reference's Step 3 answers, built from the stored transaction."""

from __future__ import annotations

from typing import Any

from connectors.money import minor_units
from state_machine import Status
from storage.transaction_view import ShownTransaction, transaction_view

CREATED_MESSAGE = "Transaction created successfully"
ACCEPTED_MESSAGE = "Transaction accepted; poll GET /connxt/v2/transactions/{txnId} for its outcome"

_SETTLED = {Status.PG_ACCEPTED.value, Status.SUCCESS.value, Status.FAILED.value}
_REFUSED = {Status.PG_REJECTED.value, Status.REJECTED.value}


def _meta(txn: ShownTransaction) -> dict[str, Any]:
    meta = txn.psp_meta or {}
    return {
        "logs": {"pspState": meta.get("pspState"), "status": txn.status},
        "http": {"exchanges": meta.get("http", [])},
    }


def is_decided(txn: ShownTransaction) -> bool:
    """The initiation has an outcome the merchant can act on."""
    return txn.status in _SETTLED or txn.status in _REFUSED


def step3_answer(
    txn: ShownTransaction, respond_async: bool = False
) -> tuple[int, str, dict[str, Any]]:
    """(HTTP status, message, data) for a POST /transactions.

    A client that asked for `Prefer: respond-async` always gets the 202 shape, even when a
    fast worker has already decided: the answer's shape must not depend on a race.
    """
    places = minor_units(txn.currency)
    if respond_async or not is_decided(txn):
        return 202, ACCEPTED_MESSAGE.format(txnId=txn.id), {"txnId": txn.id, "status": txn.status}
    if txn.status in _REFUSED or (txn.status == Status.FAILED.value and not txn.navigation):
        return (
            200,
            CREATED_MESSAGE,
            {
                "txnId": txn.id,
                "status": txn.status,
                "pspTxnId": txn.psp_txn_id,
                "success": False,
                "data": None,
                "error": txn.error or {"code": txn.status, "message": "rejected by the PSP"},
                "meta": _meta(txn),
            },
        )
    if txn.navigation:
        return (
            200,
            CREATED_MESSAGE,
            {
                "txnId": txn.id,
                "status": txn.status,
                "success": True,
                "data": {
                    "__type": "success",
                    "data": {
                        "navigation": txn.navigation,
                        "status": "success",
                        "orderId": txn.order_id or txn.id,
                        "userId": txn.user_id,
                    },
                },
                "error": None,
                "meta": _meta(txn),
            },
        )
    view = transaction_view(txn, places)
    return (
        200,
        CREATED_MESSAGE,
        {
            **view,
            "success": txn.status != Status.FAILED.value,
            "error": txn.error,
            "meta": _meta(txn),
        },
    )
