"""Verified PSP notifications applied as a set: a batch of them in three statements.

A PSP reporting the outcomes of many payments at once is the busiest moment of the
service. Applied one by one, each notification cost a handful of round trips; here the
whole batch is claimed in one statement (attempts counted, transactions read), decided in
memory through the state machine, and written in one more (every transition with its
event rows, notification and outbox message; storage.transitions.move_many), the inbox
rows marked in a third. Whatever is not a plain transition (an amount to check with the
PSP, a hold for an operator, a contradiction to record, a row another writer moved
first) takes the one-by-one path of workers.webhooks, which owns those rules.

Each transaction is under its lock for the whole batch; a second notification for the
same transaction in one batch waits for the next round (the task's retry).
"""

from __future__ import annotations

import structlog

from connectors.base import ConnectorError, WebhookEvent
from connxt.metrics import PARKED, TRANSITIONS
from state_machine import Source
from storage import inbox
from storage.db import session_scope
from storage.psp_context import PspContext, load_psp_context
from storage.reviews import Reported
from storage.transactions import decide
from storage.transitions import Move, Seen, move_many
from workers.batch import TRANSIENT, Item, run_each
from workers.inbox_handling import Handling, attempts_used_up
from workers.locks import transaction_locks
from workers.psp_calls import EVENT_FOR_OUTCOME
from workers.webhooks import (
    IGNORED,
    apply_webhook,
    ask_psp,
    foreign,
    hint_psp,
    inquiry_instead,
    outcome_of,
    process_held,
)

log = structlog.get_logger()


def apply_webhooks(items: list[Item]) -> list[Item]:
    """Apply a batch of stored notifications that name their transaction; returns the
    items to try again (busy locks, second notifications of a transaction)."""
    first: dict[str, Item] = {}
    again: list[Item] = []
    for item in items:
        if item["txn_id"] in first:
            again.append(item)  # after the first one of its transaction is applied
        else:
            first[item["txn_id"]] = item
    with transaction_locks(list(first)) as (held, busy):
        again += [first[txn_id] for txn_id in busy]
        if held:
            batch = [first[txn_id] for txn_id in held]
            try:
                _apply_held(batch)
            except TRANSIENT:
                again += batch
            except Exception:
                # Not a passing failure: one notification the set cannot take must not
                # hold back the others. One at a time, each fails (and is parked) alone.
                log.exception("webhooks.set_failed", batch=len(batch))
                failed = run_each(lambda one: process_held(one["inbox_id"], one["txn_id"]), batch)
                again += [i for i, e in zip(batch, failed, strict=True) if isinstance(e, TRANSIENT)]
    return again


def _apply_held(items: list[Item]) -> None:
    with session_scope() as session:
        claimed = inbox.claim_many(session, [item["inbox_id"] for item in items])
        contexts = {c.psp_id: load_psp_context(session, c.psp_id) for c in claimed.values()}
    marks: list[tuple[int, str, bool]] = []
    asks: list[tuple[str, PspContext]] = []
    hints: list[tuple[int, str, PspContext]] = []
    moves: list[tuple[int, Move, WebhookEvent]] = []
    alone: list[tuple[int, Seen, WebhookEvent]] = []
    for item in items:
        inbox_id, txn_id = item["inbox_id"], item["txn_id"]
        stored = claimed.get(inbox_id)
        if stored is None:
            continue  # done meanwhile (another delivery of this task)
        used_up = attempts_used_up(inbox_id, stored)
        if used_up is not None:
            marks.append((inbox_id, used_up, True))
            continue
        context = contexts[stored.psp_id]
        try:
            event = context.connector.parse_webhook(context.credential, stored.headers, stored.body)
        except ConnectorError as exc:  # e.g. stored before a key rotation: keep it for review
            marks.append((inbox_id, f"unparseable: {type(exc).__name__}", True))
            continue
        if foreign(stored, event):
            marks.append((inbox_id, IGNORED, False))
            continue
        if not event.verified:
            hints.append((inbox_id, txn_id, context))
            continue
        instead = inquiry_instead(inbox_id, stored.txn, event)
        if instead is not None:
            asks.append((txn_id, context))
            marks.append((inbox_id, instead, False))
            continue
        _, decision = decide(
            stored.txn,
            EVENT_FOR_OUTCOME[event.outcome],
            Reported(event.amount, event.currency, event.psp_state),
        )
        if decision.review is not None or decision.conflict:
            alone.append((inbox_id, stored.txn, event))  # a hold or a contradiction
        elif decision.noop:
            marks.append((inbox_id, outcome_of(decision), False))  # a repeat: nothing moves
        else:
            reason = f"PSP state {event.psp_state}"
            move = Move(stored.txn, decision, Source.WEBHOOK, reason, event.psp_txn_id)
            moves.append((inbox_id, move, event))
    with session_scope() as session:
        moved = move_many(session, [move for _, move, _ in moves])
        for inbox_id, move, event in moves:
            if move.seen.id in moved:
                marks.append((inbox_id, move.decision.status.value, False))
                TRANSITIONS.labels(move.decision.status.value, Source.WEBHOOK.value).inc()
            else:  # another writer moved it first: decided again, alone
                alone.append((inbox_id, move.seen, event))
        for inbox_id, txn_id, context in hints:
            marks.append((inbox_id, hint_psp(session, txn_id, context), False))
        inbox.mark_many(session, marks)
        # Every row parked here (out of attempts, unparseable), as Handling.record counts.
        PARKED.labels("webhook").inc(sum(1 for _, _, parked in marks if parked))
        for txn_id, context in asks:
            ask_psp(session, txn_id, context)
    for inbox_id, txn, event in alone:
        stored = claimed[inbox_id]
        handled = Handling(inbox_id, stored, contexts[stored.psp_id])
        if apply_webhook(handled, event) == "inquire":
            with session_scope() as session:
                ask_psp(session, txn.id, handled.context)
    if moved:
        log.info("webhooks.applied", moved=len(moved), batch=len(items))
