"""Task `transactions.initiate`: a batch of payments started at their PSP as a set.

The rules are those of workers.initiation (one transaction at a time); here a batch costs
two statements instead of two per payment: every attempt booked at once
(storage.transitions.start_attempts: CREATED → INITIATED with its events, the attempt
counted, the next look booked), the PSP called for each payment side by side on the
process's threads, and every plain answer written at once (move_many: the transition with
its events, the exchange for `data.meta`, and for a terminal status the merchant
notification). Whatever is not a plain transition (an unknown outcome, a hold for an
operator, a contradiction, a row another writer moved first) is recorded alone, by the
same code the one-at-a-time path uses. The waiting requests are woken with one message.

Each transaction is under its lock from the booking to the answer's commit, as before;
a failure of the set as such falls back to one transaction at a time.
"""

from __future__ import annotations

from typing import Any

import structlog

from connectors.base import PspResult
from connxt import tasks
from connxt.handoff import signal_outcomes
from connxt.metrics import TRANSITIONS
from connxt.settings import get_settings
from connxt.tracing import item_log_ids
from state_machine import Source
from storage.db import session_scope
from storage.psp_context import load_psp_context
from storage.reviews import Reported
from storage.transactions import decide
from storage.transitions import Attempt, Move, move_many, start_attempts
from workers.app import celery_app
from workers.batch import TRANSIENT, Item, items_of, run_each
from workers.initiation import INITIATING, initiate_transaction, parked, payment_request
from workers.locks import transaction_locks
from workers.psp_calls import EVENT_FOR_OUTCOME, answer_of, call_psp, record_psp_answer

log = structlog.get_logger()


@celery_app.task(name=tasks.INITIATE, bind=True)
def initiate(self, batch: list[Item] | None = None, **item: Any) -> None:
    """Initiate each transaction of the batch, side by side, each under its lock."""
    self.retry_items(initiate_many(items_of(batch, item)))


def initiate_many(items: list[Item]) -> list[Item]:
    """Initiate a batch; the items to try again (locks held elsewhere, passing failures)."""
    first = {item["txn_id"]: item for item in items}  # a repeat in one batch is one payment
    again: list[Item] = []
    with transaction_locks(list(first)) as (held, busy):
        again += [first[txn_id] for txn_id in busy]
        if not held:
            return again
        batch = [first[txn_id] for txn_id in held]
        try:
            again += _initiate_held(batch)
        except TRANSIENT:
            again += batch  # nothing was sent, or the retry finds the payment at the PSP
        except Exception:
            # Not a passing failure: one payment the set cannot take must not hold back the
            # others. One at a time, each fails alone.
            log.exception("initiate.set_failed", batch=len(batch))
            failed = run_each(lambda one: initiate_transaction(one["txn_id"]), batch)
            again += [i for i, e in zip(batch, failed, strict=True) if isinstance(e, TRANSIENT)]
    return again


def _initiate_held(items: list[Item]) -> list[Item]:
    settings = get_settings()
    ids = [item["txn_id"] for item in items]
    with session_scope() as session:
        booked = start_attempts(session, ids, INITIATING, settings.inquiry_schedule[0])
        contexts = {a.psp_id: load_psp_context(session, a.psp_id) for a in booked.values()}
    attempts = {txn_id: a for txn_id, a in booked.items() if not parked(txn_id, a)}
    results: dict[str, PspResult] = {}

    def call(item: Item) -> None:
        txn_id = item["txn_id"]
        attempt = attempts[txn_id]
        context = contexts[attempt.psp_id]
        request = payment_request(txn_id, attempt)
        results[txn_id] = call_psp(
            context, "initiate", lambda: context.connector.initiate(context.credential, request)
        )

    calling = [item for item in items if item["txn_id"] in attempts]
    failed = run_each(call, calling)
    again = []
    for item, error in zip(calling, failed, strict=True):
        if error is not None:  # left INITIATED: the retry, or the sweep, tries again
            log.error("initiate.call_failed", txn_id=item["txn_id"], error=type(error).__name__)
            if isinstance(error, TRANSIENT):
                again.append(item)
    _record(results, attempts, {item["txn_id"]: item for item in items})
    signal_outcomes(ids)
    return again


def _record(
    results: dict[str, PspResult], attempts: dict[str, Attempt], items: dict[str, Item]
) -> None:
    """Write the answers: the plain transitions in one statement, the rest alone."""
    moves: list[Move] = []
    alone: list[str] = []
    for txn_id, result in results.items():
        seen = attempts[txn_id].seen
        reported = Reported(result.amount, result.currency, result.psp_state)
        _, decision = decide(seen, EVENT_FOR_OUTCOME[result.outcome], reported)
        if decision.noop or decision.review is not None or decision.conflict:
            alone.append(txn_id)  # nothing moves, a hold, or a contradiction
            continue
        reason = result.reason or result.psp_state
        moves.append(
            Move(seen, decision, Source.PSP_RESPONSE, reason, result.psp_txn_id, answer_of(result))
        )
    with session_scope() as session:
        moved = move_many(session, moves)
    for move in moves:
        txn_id = move.seen.id
        if txn_id in moved:
            TRANSITIONS.labels(move.decision.status.value, Source.PSP_RESPONSE.value).inc()
            log.info(
                "transaction.transition",
                txn_id=txn_id,
                source=Source.PSP_RESPONSE.value,
                to_status=move.decision.status.value,
                **item_log_ids(items[txn_id]),
            )
        else:
            alone.append(txn_id)  # another writer moved it first: decided again
    for txn_id in alone:
        record_psp_answer(txn_id, results[txn_id], Source.PSP_RESPONSE, attempts[txn_id].seen)
