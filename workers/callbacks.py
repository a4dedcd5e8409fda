"""What PSPs tell us after initiation: webhooks (`callbacks.webhook`) and the status
inquiries that redirects and unverifiable webhooks trigger (`callbacks.inquire`).

Out of order is normal here. The state machine makes a repeat a no-op and a contradiction
of a final state a recorded, logged no-op; the version check makes two workers applying
the same notification at once move the transaction only once. A success for other money
than ours, or after the transaction failed, is held for an operator (storage.reviews).
"""

from __future__ import annotations

from typing import Any

import structlog

from connectors.base import ConnectorError, Outcome, WebhookEvent
from connxt import tasks
from connxt.settings import get_settings
from state_machine import TERMINAL, Decision, Source, Status
from storage import inbox
from storage.db import session_scope
from storage.inquiries import request_inquiry
from storage.models import InboxMessage
from storage.outbox import add_message
from storage.reviews import Reported
from storage.transactions import apply_event
from storage.transitions import Seen
from workers.app import celery_app
from workers.batch import Item, items_of, retry_items, run_locked, run_unlocked
from workers.inquiry import inquire_items
from workers.locks import transaction_lock
from workers.psp_context import EVENT_FOR_OUTCOME, load_psp_context

log = structlog.get_logger()


def _names_our_money(txn: Seen, event: WebhookEvent) -> bool:
    if event.amount is not None and event.amount != txn.amount:
        return False
    return event.currency is None or event.currency.strip().upper() == txn.currency


def _apply_webhook(inbox_id: int, txn: Seen, event: WebhookEvent) -> str:
    with session_scope() as session:
        completed = event.outcome is Outcome.COMPLETED
        unstated = event.amount is None or event.currency is None
        if completed and unstated and Status(txn.status) not in TERMINAL:
            # A success that does not say how much cannot be checked: the PSP's status
            # answer does say, and the inquiry compares it. (A finished transaction is not
            # asked about again: a success for it is recorded below as a late success.)
            log.warning("webhook.amount_missing", txn_id=txn.id, inbox_id=inbox_id)
            inbox.mark(session, inbox_id, "success without amount or currency: inquiry instead")
            return "inquire"
        if not completed and not _names_our_money(txn, event):
            # No money moved, yet it names other money: ask the PSP rather than act on it.
            log.warning("webhook.amount_mismatch", txn_id=txn.id, inbox_id=inbox_id)
            inbox.mark(session, inbox_id, "amount or currency mismatch: inquiry instead")
            return "inquire"
        updates = {"psp_txn_id": event.psp_txn_id} if event.psp_txn_id else {}
        # A success for other money than ours is held for an operator by apply_event.
        applied = apply_event(
            session,
            txn.id,
            EVENT_FOR_OUTCOME[event.outcome],
            Source.WEBHOOK,
            f"PSP state {event.psp_state}",
            updates,
            reported=Reported(event.amount, event.currency, event.psp_state),
            seen=txn,
        )
        outcome = _outcome(applied.decision)
        inbox.mark(session, inbox_id, outcome)
        return outcome


def _outcome(decision: Decision) -> str:
    """What the inbox row records as the notification's result."""
    if decision.review is not None:
        return decision.review.value  # held for an operator
    if decision.conflict:
        return "conflict"
    return decision.status.value


def process_inbox_message(inbox_id: int, txn_id: str | None = None) -> str:
    """Apply one stored notification under its transaction's lock.

    The ingress passes the transaction id along, sparing a read before the lock; re-drive
    and replay may not, and then it is read here.
    """
    if txn_id is None:
        with session_scope() as session:
            message = session.get(InboxMessage, inbox_id)
            if message is None:
                return "done"
            txn_id = message.txn_id
    with transaction_lock(txn_id):
        return _process_locked(inbox_id, txn_id)


def _process_locked(inbox_id: int, txn_id: str) -> str:
    with session_scope() as session:
        claimed = inbox.claim(session, inbox_id)
        if claimed is None:
            return "done"  # another delivery of this task finished while we waited
        context = load_psp_context(session, claimed.psp_id)
    if claimed.attempts > get_settings().task_max_attempts:
        with session_scope() as session:
            inbox.mark(
                session, inbox_id, f"parked after {claimed.attempts - 1} attempts", parked=True
            )
        log.error("webhook.parked", inbox_id=inbox_id, txn_id=txn_id)
        return "parked"
    try:
        event = context.connector.parse_webhook(context.credential, claimed.headers, claimed.body)
    except ConnectorError as exc:  # e.g. stored before a key rotation: keep it for review
        with session_scope() as session:
            inbox.mark(session, inbox_id, f"unparseable: {type(exc).__name__}", parked=True)
        return "parked"
    if claimed.txn is None or event.txn_id != claimed.txn.id:
        # Not a transaction of the account it came to (or not the one the row was stored
        # for): neither applied nor asked about.
        log.warning("webhook.foreign_transaction", inbox_id=inbox_id, psp_id=claimed.psp_id)
        with session_scope() as session:
            inbox.mark(session, inbox_id, "ignored: not a transaction of this PSP account")
        return "ignored"
    outcome = _apply_webhook(inbox_id, claimed.txn, event) if event.verified else "inquire"
    if outcome == "inquire":
        # Unverifiable (no signing key) or suspicious: ask the PSP itself, on its own lane
        # (a slow PSP must not hold up everybody's webhooks).
        with session_scope() as session:
            queue = tasks.psp_queue(context.connector.name)
            if event.verified:
                add_message(session, tasks.INQUIRE, {"txn_id": txn_id}, queue)
            else:
                # Anyone can send these: at most one inquiry per window per transaction.
                asked = request_inquiry(session, txn_id, queue)
                note = "the PSP is asked instead" if asked else "the PSP was asked just now"
                inbox.mark(session, inbox_id, f"unverified: {note}")
    return outcome


@celery_app.task(name=tasks.WEBHOOK, bind=True)
def webhook(self, batch: list[Item] | None = None, **item: Any) -> None:
    """Apply stored notifications; each under its transaction's lock."""
    items = items_of(batch, item)
    known = [i for i in items if i.get("txn_id")]
    # Re-drive and replay may not know the transaction: read it, then lock it.
    unknown = [i for i in items if not i.get("txn_id")]
    again = run_locked(self, known, lambda one: _process_locked(one["inbox_id"], one["txn_id"]))
    again += run_unlocked(
        self, unknown, lambda one: process_inbox_message(one["inbox_id"]), "inbox_id"
    )
    retry_items(self, again)


@celery_app.task(name=tasks.INQUIRE, bind=True)
def inquire(self, batch: list[Item] | None = None, **item: Any) -> None:
    """A redirect or an unverifiable notification: ask the PSP."""
    inquire_items(self, items_of(batch, item))
