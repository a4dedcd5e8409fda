"""Stage 2 of a payment: start it at the PSP (task `transactions.initiate`).

CREATED → INITIATED is committed *before* the PSP is called, so a PSP notification can
never arrive for a transaction we have no record of calling. If the worker dies during the
call, the redelivered task finds the transaction INITIATED and asks the connector to
initiate again; connectors make that safe (they look the payment up by our reference
first, and send our id as the PSP's idempotency key), so the PSP never charges twice.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import update

from connectors.base import Action, Outcome, PaymentRequest, PspResult
from connxt.handoff import signal_outcome
from connxt.settings import get_settings
from state_machine import Event, Source, Status
from storage.db import session_scope
from storage.models import Transaction
from storage.reviews import Reported, is_held
from storage.transactions import apply_event
from workers.app import celery_app
from workers.locks import LockBusy, transaction_lock
from workers.psp_context import EVENT_FOR_OUTCOME, PspContext, callback_urls, load_psp_context

log = structlog.get_logger()


def psp_meta(result: PspResult) -> dict[str, Any]:
    """The PSP's last word and the exchanges behind it, as `data.meta` shows them."""
    return {
        "pspState": result.psp_state,
        "http": [exchange.as_dict() for exchange in result.exchanges],
    }


def _error(result: PspResult) -> dict[str, Any] | None:
    if result.outcome in (Outcome.ACCEPTED, Outcome.COMPLETED):
        return None
    return {"code": result.outcome.value, "message": result.reason or result.psp_state or ""}


def _first_inquiry_at() -> datetime:
    return datetime.now(UTC) + timedelta(seconds=get_settings().inquiry_schedule[0])


def _prepare(txn_id: str) -> tuple[PspContext, PaymentRequest] | None:
    """Move to INITIATED (or find it there after a crash); None when there is nothing to do."""
    with session_scope() as session:
        txn = session.get(Transaction, txn_id)
        if txn is None:
            log.warning("initiate.unknown_transaction", txn_id=txn_id)
            return None
        if is_held(txn):
            return None  # the PSP already reported it paid: an operator decides from here
        return_url, webhook_url = callback_urls(txn.id, txn.psp_id)
        request = PaymentRequest(
            txn_id=txn.id,
            action=Action(txn.action),
            amount=txn.amount,
            currency=txn.currency,
            payload=txn.execute_payload,
            return_url=return_url,
            webhook_url=webhook_url,
        )
        psp_id, parent_txn_id = txn.psp_id, txn.parent_txn_id
        # Each attempt is counted in PostgreSQL, so one that keeps killing workers is parked.
        booking = {
            "initiate_attempts": Transaction.initiate_attempts + 1,
            "next_inquiry_at": _first_inquiry_at(),
        }
        if txn.status == Status.CREATED.value:
            attempts = txn.initiate_attempts + 1
            moved = apply_event(
                session, txn_id, Event.INITIATE, Source.WORKER, "sending to the PSP", booking
            )
            if moved.decision.noop:
                return None  # another writer decided it first
        elif txn.status == Status.INITIATED.value:
            attempts = session.execute(
                update(Transaction)
                .where(Transaction.id == txn_id)
                .values(**booking)
                .returning(Transaction.initiate_attempts)
            ).scalar_one()
        else:
            return None  # decided already (a duplicate message, or a webhook got there first)
        if attempts > get_settings().initiate_max_attempts:
            # Enough tries (or a poison message): from here on reconciliation only asks.
            log.error("initiate.parked", txn_id=txn_id, attempts=attempts)
            return None
        context = load_psp_context(session, psp_id)
        if parent_txn_id:
            parent_psp_txn_id = session.get(Transaction, parent_txn_id).psp_txn_id
            request = replace(request, parent_psp_txn_id=parent_psp_txn_id)
        # Only a later attempt can find a payment an earlier one made at the PSP.
        return context, replace(request, may_exist=attempts > 1)


def record_psp_answer(txn_id: str, result: PspResult, source: Source) -> Status:
    """Apply a PSP answer (initiation, inquiry or cancel) and keep the exchange for
    `data.meta`."""
    with session_scope() as session:
        meta = psp_meta(result)

        def updates(txn: Transaction) -> dict[str, Any]:
            values: dict[str, Any] = {"error": _error(result), "psp_meta": meta}
            if result.psp_txn_id:
                values["psp_txn_id"] = result.psp_txn_id
            if result.navigation:
                values["navigation"] = result.navigation.as_dict()
            return values

        # A success settles only for the money asked for; apply_event holds anything else.
        applied = apply_event(
            session,
            txn_id,
            EVENT_FOR_OUTCOME[result.outcome],
            source,
            result.reason or result.psp_state,
            updates,
            reported=Reported(result.amount, result.currency, result.psp_state),
        )
        if applied.decision.noop:
            # The exchange is kept even when the status does not move (timeouts, late answers).
            session.execute(
                update(Transaction).where(Transaction.id == txn_id).values(psp_meta=meta)
            )
        if result.outcome is Outcome.UNKNOWN:
            log.warning("psp.answer_unknown", txn_id=txn_id, reason=result.reason)
        return applied.decision.status


def initiate_transaction(txn_id: str) -> None:
    prepared = _prepare(txn_id)
    if prepared is None:
        signal_outcome(txn_id)
        return
    context, request = prepared
    result = context.connector.initiate(context.credential, request)
    status = record_psp_answer(txn_id, result, Source.PSP_RESPONSE)
    log.info("initiate.done", txn_id=txn_id, outcome=result.outcome.value, status=status.value)
    signal_outcome(txn_id)


@celery_app.task(name="transactions.initiate", bind=True, max_retries=None)
def initiate(self, txn_id: str) -> None:
    try:
        with transaction_lock(txn_id):
            initiate_transaction(txn_id)
    except LockBusy:
        raise self.retry(countdown=1) from None
