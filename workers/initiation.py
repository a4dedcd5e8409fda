"""Stage 2 of a payment: start it at the PSP, one transaction at a time (the task,
`transactions.initiate`, and its set path are in workers.initiate).

CREATED → INITIATED is committed *before* the PSP is called, so a PSP notification can
never arrive for a transaction we have no record of calling. If the worker dies during the
call, the redelivered task finds the transaction INITIATED and asks the connector to
initiate again; connectors make that safe (they look the payment up by our reference
first, and send our id as the PSP's idempotency key), so the PSP never charges twice.
"""

from __future__ import annotations

import structlog

from connectors.base import Action, PaymentRequest
from connxt.handoff import signal_outcome
from connxt.metrics import PARKED, TRANSITIONS
from connxt.settings import get_settings
from state_machine import Event, Source, Status, apply
from storage.db import session_scope
from storage.psp_context import PspContext, load_psp_context
from storage.transitions import Attempt, Seen, start_attempt
from workers.psp_calls import call_psp, callback_urls, record_psp_answer

log = structlog.get_logger()


INITIATING = apply(Status.CREATED, Event.INITIATE)  # the state machine's one answer
_INITIATED_COUNT = TRANSITIONS.labels(INITIATING.status.value, Source.WORKER.value)


def _prepare(txn_id: str) -> tuple[PspContext, PaymentRequest, Seen] | None:
    """Move to INITIATED (or find it there after a crash); None when there is nothing to do."""
    settings = get_settings()
    with session_scope() as session:
        attempt = start_attempt(session, txn_id, INITIATING, settings.inquiry_schedule[0])
        if attempt is None or parked(txn_id, attempt):
            return None  # decided already, held for an operator, unknown, or parked
        context = load_psp_context(session, attempt.psp_id)
    return context, payment_request(txn_id, attempt), attempt.seen


def parked(txn_id: str, attempt: Attempt) -> bool:
    """Whether this attempt is one too many. Each attempt is counted in PostgreSQL, so one
    that keeps killing workers (or a poison message) is parked: from here on
    reconciliation only asks the PSP."""
    if attempt.attempts <= get_settings().initiate_max_attempts:
        return False
    log.error("initiate.parked", txn_id=txn_id, attempts=attempt.attempts)
    PARKED.labels("initiation").inc()
    return True


def payment_request(txn_id: str, attempt: Attempt) -> PaymentRequest:
    """What the connector is asked to start, from the attempt as booked."""
    if attempt.was == Status.CREATED.value:
        _INITIATED_COUNT.inc()
    return_url, webhook_url = callback_urls(txn_id, attempt.psp_id)
    return PaymentRequest(
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


def initiate_transaction(txn_id: str) -> None:
    prepared = _prepare(txn_id)
    if prepared is None:
        signal_outcome(txn_id)
        return
    context, request, seen = prepared
    result = call_psp(
        context, "initiate", lambda: context.connector.initiate(context.credential, request)
    )
    status = record_psp_answer(txn_id, result, Source.PSP_RESPONSE, seen)
    log.debug("initiate.done", txn_id=txn_id, outcome=result.outcome.value, status=status.value)
    signal_outcome(txn_id)
