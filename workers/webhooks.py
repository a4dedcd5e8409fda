"""Stored PSP webhooks applied: one path for a set and for one.

A PSP reporting the outcomes of many payments at once is the busiest moment of the
service, so notifications are handled a set at a time, in three statements whatever its
size: claimed in one (attempts counted, transactions read: storage.inbox.claim_many),
judged in memory by the rules (workers.webhook_rules), and written in one database
transaction (storage.inbox.record: every transition with its event rows, notification and
outbox message in one statement, the inbox marks in another). A decision another writer
got ahead of is judged again against the row as it is now.

Every entry comes through here: the task (workers.callbacks) with what the ingress, the
re-drive (workers.reconcile) and the console's replay send, and ``connxt webhooks replay``
(``process_inbox_message``). A single notification is a set of one.

Each transaction is under its lock for the whole set; a second notification for the same
transaction in one set waits for the next round (the task's retry).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import replace

import structlog

from connxt.metrics import PARKED
from connxt.settings import get_settings
from storage import inbox
from storage.db import session_scope
from storage.decisions import ROUNDS, read_again
from storage.psp_context import psp_contexts
from workers.item_threads import TRANSIENT, Item, run_each
from workers.locks import transaction_lock, transaction_locks
from workers.webhook_rules import Loaded, judge

log = structlog.get_logger()


def apply_webhooks(items: list[Item]) -> list[Item]:
    """Apply a set of stored notifications, each under its transaction's lock; returns
    the items to try again (busy locks, second notifications of a transaction, passing
    failures)."""
    if any("txn_id" not in item for item in items):
        items = _naming_transactions(items)
    first: dict[str, Item] = {}
    unlocked: list[Item] = []  # rows naming no transaction: nothing to move, nothing to lock
    for item in items:
        if item["txn_id"] is None:
            unlocked.append(item)
        else:
            first.setdefault(item["txn_id"], item)  # a second one waits for the next round
    with transaction_locks(list(first)) as (held, _busy):
        batch = unlocked + [first[txn_id] for txn_id in held]
        failed = _apply_set(batch) if batch else []
    # In the order they came, so a transaction's notifications keep theirs.
    done = {id(item) for item in batch} - {id(item) for item in failed}
    return [item for item in items if id(item) not in done]


def _apply_set(batch: list[Item]) -> list[Item]:
    """Apply a set whose locks are held; the items that failed for a passing reason."""
    try:
        apply_held(batch)
        return []
    except TRANSIENT:
        return batch
    except Exception as exc:
        errors: list[BaseException | None] = [exc]
        if len(batch) > 1:
            # Not a passing failure: one notification the set cannot take must not hold
            # back the others. As sets of one, each fails alone.
            log.exception("webhooks.set_failed", batch=len(batch))
            errors = run_each(lambda one: apply_held([one]), batch)
    for item, error in zip(batch, errors, strict=True):
        if error is not None and not isinstance(error, TRANSIENT):
            # Its row stays as it was, its attempt counted: re-driven, then parked.
            log.error("webhook.failed", error=type(error).__name__, exc_info=error, **item)
    return [item for item, e in zip(batch, errors, strict=True) if isinstance(e, TRANSIENT)]


def _naming_transactions(items: list[Item]) -> list[Item]:
    """The items with the transaction each row names: the re-drive and a replay may not
    know it. A row that is gone is done."""
    with session_scope() as session:
        named = inbox.transactions_of(session, [item["inbox_id"] for item in items])
    return [
        {**item, "txn_id": named[item["inbox_id"]]} for item in items if item["inbox_id"] in named
    ]


def _txn_id(lost: Loaded) -> str:
    """The transaction of a notification whose decision another writer got ahead of."""
    # Only a decision can be lost, and only a notification naming a transaction has one.
    assert lost.claimed.txn_id is not None
    return lost.claimed.txn_id


def process_inbox_message(inbox_id: int) -> str:
    """Apply one stored notification here and now (``connxt webhooks replay``): a set of
    one, under its transaction's lock (LockBusy while a worker holds it). What became of
    it: a status, a review, "ignored", "inquire", "parked", or "done" when it was already."""
    named = _naming_transactions([{"inbox_id": inbox_id}])
    if not named:
        return "done"
    txn_id = named[0]["txn_id"]
    with transaction_lock(txn_id) if txn_id is not None else nullcontext():
        return apply_held(named)[inbox_id]


def apply_held(items: list[Item]) -> dict[int, str]:
    """Apply stored notifications, at most one per transaction, whose transactions' locks
    the caller holds; what became of each, by inbox id ("done": another delivery handled
    it meanwhile)."""
    ids = [item["inbox_id"] for item in items]
    with session_scope() as session:  # committed at once: the attempts count even if we die
        claimed = inbox.claim_many(session, ids)
        contexts = psp_contexts(session, (c.psp_id for c in claimed.values()))
    loaded = [Loaded(i, c, contexts[c.psp_id]) for i, c in claimed.items()]
    outcomes = dict.fromkeys(ids, "done")
    max_attempts = get_settings().task_max_attempts
    for _round in range(ROUNDS):
        verdicts = [judge(one, max_attempts) for one in loaded]
        with session_scope() as session:
            lost = inbox.record(session, verdicts)
        for verdict in verdicts:
            if verdict.inbox_id not in lost:
                outcomes[verdict.inbox_id] = verdict.outcome
        if parked := sum(1 for verdict in verdicts if verdict.parked):
            PARKED.labels("webhook").inc(parked)
        if not lost:
            break
        # Another writer moved these transactions first: judged again as they are now.
        loaded = [one for one in loaded if one.inbox_id in lost]
        with session_scope() as session:
            now = read_again(session, [_txn_id(one) for one in loaded])
        loaded = [
            replace(one, claimed=replace(one.claimed, txn=now[_txn_id(one)])) for one in loaded
        ]
    else:
        raise RuntimeError(f"could not settle webhooks {sorted(lost)} after concurrent updates")
    if claimed:
        log.info("webhooks.applied", batch=len(items), claimed=len(claimed))
    return outcomes
