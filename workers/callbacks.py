"""What PSPs tell us after initiation: webhooks (`callbacks.webhook`) and the status
inquiries that redirects and unverifiable webhooks trigger (`callbacks.inquire`).

Out of order is normal here. The state machine makes a repeat a no-op and a contradiction
of a final state a recorded, logged no-op; the version check makes two workers applying
the same notification at once move the transaction only once.
"""

from __future__ import annotations

import structlog

from connectors.base import ConnectorError, WebhookEvent
from connxt.settings import get_settings
from state_machine import Source
from storage import inbox
from storage.db import session_scope
from storage.models import InboxMessage, Transaction
from storage.transactions import apply_event
from workers.app import celery_app
from workers.inquiry import inquire_locked, inquire_transaction
from workers.locks import LockBusy, transaction_lock
from workers.psp_context import EVENT_FOR_OUTCOME, load_psp_context

log = structlog.get_logger()


def _amount_mismatch(txn: Transaction, event: WebhookEvent) -> bool:
    if event.amount is not None and event.amount != txn.amount:
        return True
    return event.currency is not None and event.currency.upper() != txn.currency


def _apply_webhook(inbox_id: int, txn_id: str, event: WebhookEvent) -> str:
    with session_scope() as session:
        txn = session.get(Transaction, txn_id)
        if _amount_mismatch(txn, event):
            # Never settle on a notification that disagrees with what we asked for.
            log.warning("webhook.amount_mismatch", txn_id=txn_id, inbox_id=inbox_id)
            inbox.mark(session, inbox_id, "amount or currency mismatch: inquiry instead")
            return "inquire"
        updates = {"psp_txn_id": event.psp_txn_id} if event.psp_txn_id else {}
        applied = apply_event(
            session,
            txn_id,
            EVENT_FOR_OUTCOME[event.outcome],
            Source.WEBHOOK,
            f"PSP state {event.psp_state}",
            updates,
        )
        outcome = "conflict" if applied.decision.conflict else applied.decision.status.value
        inbox.mark(session, inbox_id, outcome)
        return outcome


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
        message = session.get(InboxMessage, inbox_id)
        if message is None or message.processed_at is not None or message.parked_at is not None:
            return "done"  # another delivery of this task finished while we waited
        # Counted in PostgreSQL, so a notification that keeps killing workers is parked.
        attempts = inbox.count_attempt(session, inbox_id)
        headers, body = dict(message.headers), bytes(message.body)
        context = load_psp_context(session, message.psp_id)
    if attempts > get_settings().task_max_attempts:
        with session_scope() as session:
            inbox.mark(session, inbox_id, f"parked after {attempts - 1} attempts", parked=True)
        log.error("webhook.parked", inbox_id=inbox_id, txn_id=txn_id)
        return "parked"
    try:
        event = context.connector.parse_webhook(context.credential, headers, body)
    except ConnectorError as exc:  # e.g. stored before a key rotation: keep it for review
        with session_scope() as session:
            inbox.mark(session, inbox_id, f"unparseable: {type(exc).__name__}", parked=True)
        return "parked"
    outcome = _apply_webhook(inbox_id, txn_id, event) if event.verified else "inquire"
    if outcome == "inquire":
        # Unverifiable (no signing key) or suspicious: ask the PSP itself.
        inquire_transaction(txn_id, Source.INQUIRY)
        with session_scope() as session:
            inbox.mark(session, inbox_id, "applied through inquiry")
    return outcome


@celery_app.task(name="callbacks.webhook", bind=True, max_retries=None)
def webhook(self, inbox_id: int, txn_id: str | None = None) -> None:
    try:
        process_inbox_message(inbox_id, txn_id)
    except LockBusy:
        raise self.retry(countdown=1) from None


@celery_app.task(name="callbacks.inquire", bind=True, max_retries=5)
def inquire(self, txn_id: str) -> None:
    """A redirect or an unverifiable notification: ask the PSP."""
    inquire_locked(self, txn_id)
