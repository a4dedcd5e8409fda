"""Expiry of abandoned deposits: close the payment at the PSP where it lets us, then fail it.

Failing a deposit only in our books would leave the PSP's payment page payable, and a
customer who pays it then pays for something the merchant was told had failed. So expiry
first asks the PSP to cancel the payment (connectors.base.Cancellable). Where the PSP
cannot (Sticpay has no cancel API) or will not, the deposit still expires, and a success
that arrives later is recorded as a late success for the merchant and an operator.
"""

from __future__ import annotations

from typing import Any

import structlog

from connectors.base import Cancellable, Outcome, PspResult
from state_machine import Event, Source, Status
from storage.db import session_scope
from storage.decisions import apply_event
from storage.psp_context import PspContext
from workers.psp_calls import call_psp, psp_meta, record_psp_answer

log = structlog.get_logger()


def expire(txn_id: str, context: PspContext, psp_txn_id: str | None, status: Status) -> Status:
    """Expire an unpaid deposit now in ``status`` (caller holds the transaction lock)."""
    cancelled = _cancel_at_psp(context, txn_id, psp_txn_id)
    if cancelled is not None and cancelled.outcome is Outcome.COMPLETED:
        # Paid between our look and the cancel: settled like any PSP answer (amount checked).
        return record_psp_answer(txn_id, cancelled, Source.PSP_RESPONSE)
    if cancelled is not None and cancelled.outcome is Outcome.UNKNOWN:
        # The page may still be open: keep the deposit open and try again at the next look,
        # rather than tell the merchant FAILED while the customer can still pay.
        log.warning("expiry.cancel_unknown", txn_id=txn_id, reason=cancelled.reason)
        return status
    if cancelled is not None and cancelled.outcome is not Outcome.FAILED:
        log.warning("expiry.cancel_refused", txn_id=txn_id, psp_state=cancelled.psp_state)
    updates: dict[str, Any] = {"error": {"code": "EXPIRED", "message": "expired"}}
    if cancelled is not None:
        updates["psp_meta"] = psp_meta(cancelled)
    with session_scope() as session:
        applied = apply_event(session, txn_id, Event.EXPIRE, Source.EXPIRY, "expired", updates)
    return applied.decision.status


def _cancel_at_psp(context: PspContext, txn_id: str, psp_txn_id: str | None) -> PspResult | None:
    """The PSP's answer to our cancel; None where there is nothing it could cancel."""
    if psp_txn_id is None or not isinstance(context.connector, Cancellable):
        return None
    connector = context.connector
    return call_psp(
        context, "cancel", lambda: connector.cancel(context.credential, txn_id, psp_txn_id)
    )
