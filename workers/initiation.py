"""Task `transactions.initiate`: payments started at their PSP, a set at a time. A single
payment (an operator's `connxt reconcile`; the reconcile sweep's re-drive comes through
the task) is a set of one.

CREATED → INITIATED is committed *before* the PSP is called, so a PSP notification can
never arrive for a transaction we have no record of calling. If the worker dies during the
call, the redelivered task finds the transaction INITIATED and asks the connector to
initiate again; connectors make that safe (they look the payment up by our reference
first, and send our id as the PSP's idempotency key), so the PSP never charges twice.

A set costs two statements whatever its size: every attempt booked at once
(storage.status_writes.start_attempts: CREATED → INITIATED with its events, the attempt
counted, the next look booked), the PSP called for each payment side by side on the
process's threads, and every answer written at once (workers.psp_calls.record_psp_answers:
each transition with its events, the exchange for `data.meta`, and for a terminal status
the merchant notification). The waiting requests are woken with one message. Each
transaction is under its lock from the booking to the answer's commit.
"""

from __future__ import annotations

from typing import Any

import structlog

from connectors.base import Action, PaymentRequest, PspResult
from connxt import tasks
from connxt.handoff import signal_outcomes
from connxt.metrics import PARKED, TRANSITIONS
from connxt.settings import get_settings
from connxt.tracing import item_log_ids
from state_machine import Event, Source, Status, apply
from storage.db import session_scope
from storage.psp_context import load_psp_context
from storage.status_writes import Attempt, start_attempts
from workers.app import celery_app
from workers.item_threads import TRANSIENT, Item, items_of, run_each
from workers.locks import transaction_locks
from workers.psp_calls import call_psp, callback_urls, record_psp_answers

log = structlog.get_logger()

INITIATING = apply(Status.CREATED, Event.INITIATE)  # the state machine's one answer
_INITIATED_COUNT = TRANSITIONS.labels(INITIATING.status.value, Source.WORKER.value)


@celery_app.task(name=tasks.INITIATE, bind=True)
def initiate(self, batch: list[Item] | None = None, **item: Any) -> None:
    """Initiate each transaction of the batch, side by side, each under its lock."""
    self.retry_items(initiate_many(items_of(batch, item)))


def initiate_many(items: list[Item]) -> list[Item]:
    """Initiate a set; the items to try again (locks held elsewhere, passing failures)."""
    first = {item["txn_id"]: item for item in items}  # a repeat in one batch is one payment
    again: list[Item] = []
    with transaction_locks(list(first)) as (held, busy):
        again += [first[txn_id] for txn_id in busy]
        if not held:
            return again
        batch = [first[txn_id] for txn_id in held]
        try:
            failed = initiate_held(batch)
        except TRANSIENT:
            return again + batch  # nothing was sent, or the retry finds the payment at the PSP
        except Exception as exc:
            if len(batch) > 1:
                # Not a passing failure: one payment the set cannot take must not hold back
                # the others. As sets of one, each fails alone.
                log.exception("initiate.set_failed", batch=len(batch))
                errors = run_each(lambda one: initiate_transaction(one["txn_id"]), batch)
            else:
                log.error("initiate.failed", error=type(exc).__name__, exc_info=exc, **batch[0])
                errors = [exc]
            failed = {i["txn_id"]: e for i, e in zip(batch, errors, strict=True) if e is not None}
    # Left INITIATED (or CREATED): the retry, or the sweep, tries again.
    return again + [first[txn_id] for txn_id, e in failed.items() if isinstance(e, TRANSIENT)]


def initiate_transaction(txn_id: str) -> None:
    """Initiate one transaction whose lock the caller holds: a set of one. Raises what
    the PSP call raised (the transaction stays INITIATED for the next try)."""
    failed = initiate_held([{"txn_id": txn_id}])
    if txn_id in failed:
        raise failed[txn_id]


def initiate_held(items: list[Item]) -> dict[str, BaseException]:
    """Initiate transactions whose locks the caller holds; the PSP calls that failed, by
    transaction id."""
    settings = get_settings()
    ids = [item["txn_id"] for item in items]
    with session_scope() as session:
        booked = start_attempts(session, ids, INITIATING, settings.inquiry_schedule[0])
        contexts = {a.psp_id: load_psp_context(session, a.psp_id) for a in booked.values()}
    attempts = {}
    for txn_id, attempt in booked.items():
        if parked(attempt, settings.initiate_max_attempts):
            log.error("initiate.parked", txn_id=txn_id, attempts=attempt.attempts)
            PARKED.labels("initiation").inc()
            continue
        if attempt.was == Status.CREATED.value:
            _INITIATED_COUNT.inc()
        attempts[txn_id] = attempt
    results: dict[str, PspResult] = {}

    def call(item: Item) -> None:
        txn_id = item["txn_id"]
        attempt = attempts[txn_id]
        context = contexts[attempt.psp_id]
        request = payment_request(txn_id, attempt, *callback_urls(txn_id, attempt.psp_id))
        results[txn_id] = call_psp(
            context, "initiate", lambda: context.connector.initiate(context.credential, request)
        )

    calling = [item for item in items if item["txn_id"] in attempts]
    failed = {}
    for item, error in zip(calling, run_each(call, calling), strict=True):
        if error is not None:
            log.error("initiate.call_failed", txn_id=item["txn_id"], error=type(error).__name__)
            failed[item["txn_id"]] = error
    if results:
        record_psp_answers(
            results,
            Source.PSP_RESPONSE,
            seen={txn_id: attempts[txn_id].seen for txn_id in results},
            log_ids={item["txn_id"]: item_log_ids(item) for item in items},
        )
    signal_outcomes(ids)
    return failed


# -- the rules, pure over the attempt as booked -------------------------------------------


def parked(attempt: Attempt, max_attempts: int) -> bool:
    """Whether this attempt is one too many. Each attempt is counted in PostgreSQL, so one
    that keeps killing workers (or a poison message) is parked: from here on
    reconciliation only asks the PSP."""
    return attempt.attempts > max_attempts


def payment_request(
    txn_id: str, attempt: Attempt, return_url: str, webhook_url: str
) -> PaymentRequest:
    """What the connector is asked to start, from the attempt as booked."""
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
