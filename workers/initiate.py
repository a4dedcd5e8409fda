"""Stage 2 of a payment: start it at the PSP (task `transactions.initiate`).

CREATED → INITIATED is committed *before* the PSP is called, so a PSP notification can
never arrive for a transaction we have no record of calling. If the worker dies during the
call, the redelivered task finds the transaction INITIATED and asks the connector to
initiate again; connectors make that safe (they look the payment up by our reference
first, and send our id as the PSP's idempotency key), so the PSP never charges twice.
"""

from __future__ import annotations

from typing import Any

import structlog

from connectors.base import Action, Outcome, PaymentRequest, PspResult
from connxt import tasks
from connxt.handoff import signal_outcome
from connxt.metrics import TRANSITIONS
from connxt.settings import get_settings
from state_machine import Event, Source, Status, apply
from storage.db import session_scope
from storage.reviews import Reported
from storage.transactions import apply_event
from storage.transitions import Seen, book, start_attempt
from workers.app import celery_app
from workers.batch import Item, items_of, retry_items, run_locked
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


_INITIATING = apply(Status.CREATED, Event.INITIATE)  # the state machine's one answer


def _prepare(txn_id: str) -> tuple[PspContext, PaymentRequest, Seen] | None:
    """Move to INITIATED (or find it there after a crash); None when there is nothing to do."""
    settings = get_settings()
    with session_scope() as session:
        attempt = start_attempt(session, txn_id, _INITIATING, settings.inquiry_schedule[0])
        if attempt is None:
            return None  # decided already, held for an operator, or unknown
        # Each attempt is counted in PostgreSQL, so one that keeps killing workers is parked.
        if attempt.attempts > settings.initiate_max_attempts:
            # Enough tries (or a poison message): from here on reconciliation only asks.
            log.error("initiate.parked", txn_id=txn_id, attempts=attempt.attempts)
            return None
        context = load_psp_context(session, attempt.psp_id)
    return_url, webhook_url = callback_urls(txn_id, attempt.psp_id)
    request = PaymentRequest(
        txn_id=txn_id,
        action=Action(attempt.action),
        amount=attempt.seen.amount,
        currency=attempt.seen.currency,
        payload=attempt.execute_payload,
        return_url=return_url,
        webhook_url=webhook_url,
        parent_psp_txn_id=attempt.parent_psp_txn_id,
        # Only a later attempt can find a payment an earlier one made at the PSP.
        may_exist=attempt.attempts > 1,
    )
    if attempt.was == Status.CREATED.value:
        TRANSITIONS.labels(_INITIATING.status.value, Source.WORKER.value).inc()
    return context, request, attempt.seen


def record_psp_answer(
    txn_id: str, result: PspResult, source: Source, seen: Seen | None = None
) -> Status:
    """Apply a PSP answer (initiation, inquiry or cancel) and keep the exchange for
    `data.meta`. ``seen``: the row as the caller last wrote it (spares a read)."""
    with session_scope() as session:
        meta = psp_meta(result)

        def updates(_txn: Seen) -> dict[str, Any]:
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
            seen=seen,
        )
        if applied.decision.noop:
            # The exchange is kept even when the status does not move (timeouts, late answers).
            book(session, txn_id, {"psp_meta": meta})
        if result.outcome is Outcome.UNKNOWN:
            log.warning("psp.answer_unknown", txn_id=txn_id, reason=result.reason)
        return applied.decision.status


def initiate_transaction(txn_id: str) -> None:
    prepared = _prepare(txn_id)
    if prepared is None:
        signal_outcome(txn_id)
        return
    context, request, seen = prepared
    result = context.connector.initiate(context.credential, request)
    status = record_psp_answer(txn_id, result, Source.PSP_RESPONSE, seen)
    log.info("initiate.done", txn_id=txn_id, outcome=result.outcome.value, status=status.value)
    signal_outcome(txn_id)


@celery_app.task(name=tasks.INITIATE, bind=True)
def initiate(self, batch: list[Item] | None = None, **item: Any) -> None:
    """Initiate each transaction of the batch, side by side, each under its lock."""
    again = run_locked(self, items_of(batch, item), lambda one: initiate_transaction(one["txn_id"]))
    retry_items(self, again)
