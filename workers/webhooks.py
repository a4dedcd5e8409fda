"""Applying a PSP's notification, one at a time: the rules every path follows.

Out of order is normal here. The state machine makes a repeat a no-op and a contradiction
of a final state a recorded, logged no-op; the version check makes two workers applying
the same notification at once move the transaction only once. A success for other money
than ours, or after the transaction failed, is held for an operator (storage.reviews).
"""

from __future__ import annotations

import structlog
from sqlalchemy.orm import Session

from connectors.base import ConnectorError, Outcome, WebhookEvent
from connxt import tasks
from state_machine import TERMINAL, Decision, Source, Status
from storage import inbox
from storage.db import session_scope
from storage.inquiries import request_inquiry
from storage.models import InboxMessage
from storage.outbox import add_message
from storage.psp_context import PspContext
from storage.reviews import Reported
from storage.transactions import apply_event
from storage.transitions import Seen
from workers.inbox_handling import Handling, handling
from workers.locks import transaction_lock
from workers.psp_calls import EVENT_FOR_OUTCOME

log = structlog.get_logger()


def _names_our_money(txn: Seen, event: WebhookEvent) -> bool:
    if event.amount is not None and event.amount != txn.amount:
        return False
    return event.currency is None or event.currency.strip().upper() == txn.currency


def inquiry_instead(inbox_id: int, txn: Seen, event: WebhookEvent) -> str | None:
    """Why a verified notification is not acted on but the PSP asked instead; None when
    it can be applied."""
    completed = event.outcome is Outcome.COMPLETED
    unstated = event.amount is None or event.currency is None
    if completed and unstated and Status(txn.status) not in TERMINAL:
        # A success that does not say how much cannot be checked: the PSP's status
        # answer does say, and the inquiry compares it. (A finished transaction is not
        # asked about again: a success for it is recorded as a late success.)
        log.warning("webhook.amount_missing", txn_id=txn.id, inbox_id=inbox_id)
        return "success without amount or currency: inquiry instead"
    if not completed and not _names_our_money(txn, event):
        # No money moved, yet it names other money: ask the PSP rather than act on it.
        log.warning("webhook.amount_mismatch", txn_id=txn.id, inbox_id=inbox_id)
        return "amount or currency mismatch: inquiry instead"
    return None


def apply_webhook(handled: Handling, event: WebhookEvent) -> str:
    """Apply one verified notification (the transaction as the claim read it; stale is
    fine), and record it with the transition, in one database transaction."""
    txn, inbox_id = handled.claimed.txn, handled.inbox_id
    with session_scope() as session:
        instead = inquiry_instead(inbox_id, txn, event)
        if instead is not None:
            return handled.record(session, instead, "inquire")
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
        return handled.record(session, outcome_of(applied.decision))


def outcome_of(decision: Decision) -> str:
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
        return process_held(inbox_id, txn_id)


def process_held(inbox_id: int, txn_id: str) -> str:
    """Apply one notification whose transaction's lock the caller holds."""
    with handling(inbox_id) as handled:
        if handled is None:
            return "done"  # another delivery of this task finished while we waited
        if handled.finished:
            return handled.outcome or "done"  # parked: out of attempts
        return _handle(handled, txn_id)
    return "done"  # unreachable: the block returns (a type checker cannot tell)


def _handle(handled: Handling, txn_id: str) -> str:
    claimed, context = handled.claimed, handled.context
    try:
        event = context.connector.parse_webhook(context.credential, claimed.headers, claimed.body)
    except ConnectorError as exc:  # e.g. stored before a key rotation: keep it for review
        with session_scope() as session:
            return handled.record(
                session, f"unparseable: {type(exc).__name__}", "parked", parked=True
            )
    if foreign(claimed, event):
        with session_scope() as session:
            return handled.record(session, IGNORED, "ignored")
    if not event.verified:
        with session_scope() as session:
            return handled.record(session, hint_psp(session, txn_id, context), "inquire")
    outcome = apply_webhook(handled, event)
    if outcome == "inquire":  # verified, yet suspicious: ask the PSP itself
        with session_scope() as session:
            ask_psp(session, txn_id, context)
    return outcome


IGNORED = "ignored: not a transaction of this PSP account"


def foreign(claimed: inbox.Claimed, event: WebhookEvent) -> bool:
    """Not a transaction of the account it came to (or not the one the row was stored
    for): neither applied nor asked about."""
    if claimed.txn is None or event.txn_id != claimed.txn.id:
        log.warning("webhook.foreign_transaction", psp_id=claimed.psp_id, txn_id=event.txn_id)
        return True
    return False


def _queue(context: PspContext) -> str:
    # The PSP's own lane: a slow PSP must not hold up everybody's webhooks.
    return tasks.psp_queue(context.connector.name)


def ask_psp(session: Session, txn_id: str, context: PspContext) -> None:
    """An inquiry for a verified notification that cannot be acted on as it is, sent when
    the caller's transaction commits."""
    add_message(session, tasks.INQUIRE, {"txn_id": txn_id}, _queue(context))


def hint_psp(session: Session, txn_id: str, context: PspContext) -> str:
    """An unverifiable notification: anyone can send these, so at most one inquiry per
    window per transaction (storage.inquiries). What the inbox row records."""
    asked = request_inquiry(session, txn_id, _queue(context))
    return "unverified: " + ("the PSP is asked instead" if asked else "the PSP was asked just now")
