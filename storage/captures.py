"""What a transaction captured: the money that actually moved, beside the money asked.

A plain SUCCESS moved exactly the amount asked. A review resolved SUCCESS moved what the
PSP stated, or, where it stated none, what the operator read from the PSP
(storage.reviews): 200.00 asked and 5.00 paid is a success of 5.00, never of 200.00. That
is recorded in ``captured_amount`` and ``captured_currency``; the API, the merchant
notification, the console and the CLI show it beside ``txnAmount``, and refunds are
bounded by it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from state_machine import Status
from storage.models import Transaction
from storage.transactions import refunded_total


def captured(txn: Any) -> tuple[Decimal, str] | None:
    """The money the transaction moved, or None while none did (or none is known to)."""
    if txn.captured_amount is not None and txn.captured_currency is not None:
        return txn.captured_amount, txn.captured_currency
    if txn.status == Status.SUCCESS.value:
        return txn.amount, txn.currency
    return None


def refundable(session: Session, deposit: Transaction) -> tuple[Decimal, str]:
    """What of a successful deposit can still be refunded, and in which currency: what it
    captured, less the refunds that took or may still take money. The caller holds the
    deposit's row lock, so the remainder cannot be spent twice."""
    money = captured(deposit)
    if money is None:
        return Decimal(0), deposit.currency
    amount, currency = money
    return amount - refunded_total(session, deposit.id), currency
