"""The console's actions on one transaction, each recorded as an event naming the operator.

Nothing here talks to Celery: work for the workers leaves through the outbox when the
database transaction commits (storage.outbox), exactly as the API's own requests send
it, and the operator's event row is written in that same database transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

import structlog

from connxt import tasks
from console.auth import Viewer
from console.service import NotFound
from state_machine import Status
from storage import audit, decisions, notifications
from storage import transactions as txn_repo
from storage.catalog import cached_target
from storage.db import session_scope
from storage.operator_actions import due_now, rearm_webhook, record_operator_action
from storage.outbox import add_message
from storage.review_decisions import CannotCapture
from storage.reviews import is_held
from workers.locks import LockBusy, transaction_lock

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from storage.models import Transaction

log = structlog.get_logger()


class Refused(Exception):
    """The action does not apply to the transaction as it stands; the message says why."""


@dataclass(frozen=True)
class Done:
    message: str


def actor(viewer: Viewer) -> str:
    """How the audit trail names someone acting from the console."""
    return f"console {viewer.who}"


def _visible(session: Session, viewer: Viewer, txn_id: str) -> Transaction:
    txn = txn_repo.get_in_scope(session, viewer.scope, txn_id)
    if txn is None:
        raise NotFound("transaction", txn_id)
    return txn


def reconcile(viewer: Viewer, txn_id: str) -> Done:
    """Ask the PSP where an open transaction stands."""
    with session_scope() as session:
        txn = _visible(session, viewer, txn_id)
        if not txn_repo.is_open(txn):
            raise Refused(f"{txn.status} is final: there is nothing to reconcile")
        if is_held(txn):
            raise Refused("held for review: only a decision settles it")
        if txn.status == Status.PG_ACCEPTED.value:
            # The PSP has it: ask now, on the PSP's own lane, as a customer's redirect does.
            target = cached_target(session, txn.flow_target_id)
            assert target is not None  # a foreign key names it; flow targets are never deleted
            connector = target.name
            add_message(session, tasks.INQUIRE, {"txn_id": txn.id}, tasks.psp_queue(connector))
            what, told = "reconcile now: the PSP is asked", "The PSP is being asked"
        else:
            # Not accepted yet: the sweep decides between initiating again and inquiring
            # (an inquiry now could fail a payment whose initiation is still being retried).
            due_now(session, txn.id)
            what = "reconcile now: due for the next reconciliation pass"
            told = "Due for the next reconciliation pass"
        record_operator_action(session, txn, what, viewer.who)
        audit.record(
            session,
            actor(viewer),
            "reconcile.asked",
            txn.id,
            {"status": txn.status},
            {"what": what},
        )
    log.info("console.reconcile", txn_id=txn_id, operator=viewer.who)
    return Done(told)


def replay_webhook(viewer: Viewer, txn_id: str, inbox_id: int) -> Done:
    """Process a stored PSP notification again, parked or not (applying one that was
    applied already changes nothing: the state machine makes it a no-op)."""
    with session_scope() as session:
        txn = _visible(session, viewer, txn_id)
        rearmed = rearm_webhook(session, inbox_id, txn.id)
        if rearmed is None:
            raise NotFound("transaction", inbox_id)  # its webhook, as the page says
        add_message(session, tasks.WEBHOOK, {"inbox_id": inbox_id, "txn_id": txn.id})
        record_operator_action(session, txn, f"PSP webhook #{inbox_id} replayed", viewer.who)
        audit.record(
            session,
            actor(viewer),
            "webhook.replayed",
            txn.id,
            {"parkedAt": rearmed.parked_at.isoformat() if rearmed.parked_at else None},
            {"inboxId": inbox_id},
        )
    log.info("console.replay_webhook", txn_id=txn_id, inbox_id=inbox_id, operator=viewer.who)
    return Done(f"Webhook #{inbox_id} is being processed again")


def retry_notification(viewer: Viewer, txn_id: str, notification_id: str) -> Done:
    """Send a merchant notification again, whatever became of it."""
    with session_scope() as session:
        txn = _visible(session, viewer, txn_id)
        notification = notifications.find(session, notification_id, txn_id=txn.id)
        if notification is None:
            raise NotFound("transaction", notification_id)  # its notification
        before = {"status": notification.status, "attempts": notification.attempts}
        notifications.rearm(session, notification)
        record_operator_action(
            session, txn, f"notification {notification_id} sent again", viewer.who
        )
        audit.record(
            session,
            actor(viewer),
            "notification.resent",
            txn.id,
            before,
            {"notificationId": notification_id},
        )
    log.info(
        "console.retry_notification",
        txn_id=txn_id,
        notification_id=notification_id,
        operator=viewer.who,
    )
    return Done(f"Notification {notification_id} is being sent again")


def resolve(
    viewer: Viewer,
    txn_id: str,
    decided: str,
    note: str,
    amount: str = "",
    currency: str = "",
) -> Done:
    """An operator's decision on a transaction held for review (storage.reviews): an
    operator's act, never a tenant's, recorded with who decided and why. SUCCESS records
    what was captured: the PSP's stated money, else ``amount`` (``currency``)."""
    with session_scope() as session:
        _visible(session, viewer, txn_id)  # before taking a lock on it; not found first
    if not viewer.is_operator:
        raise Refused("only an operator resolves a review")
    if decided not in (Status.SUCCESS.value, Status.FAILED.value):
        raise Refused("a decision is SUCCESS or FAILED")
    note = note.strip()
    if not note:
        raise Refused("say why: the reason is kept with the decision")
    try:
        paid = Decimal(amount.strip()) if amount.strip() else None
    except InvalidOperation:
        raise Refused("the amount is a decimal number, e.g. 5.00") from None
    try:
        # As `connxt txn resolve`: the lock keeps a worker's PSP call for this transaction
        # out of the way; the version check in resolve_review makes the decision safe.
        with transaction_lock(txn_id), session_scope() as session:
            txn = _visible(session, viewer, txn_id)
            before = txn.status
            resolved = decisions.resolve_review(
                session,
                txn_id,
                Status(decided),
                note[:500],
                by=viewer.who,
                amount=paid,
                currency=currency.strip() or None,
            )
            after = resolved.status
            audit.record(
                session,
                actor(viewer),
                "review.resolved",
                txn_id,
                {"status": before, "review": resolved.review_reason},
                {"status": after, "resolution": decided, "note": note[:500]},
            )
    except decisions.NothingToResolve:
        raise Refused("not held for review (never was, or decided already)") from None
    except CannotCapture as refused:
        raise Refused(str(refused)) from None
    except LockBusy:
        raise Refused("a worker is busy with this transaction: try again in a moment") from None
    log.info("console.resolve", txn_id=txn_id, decided=decided, operator=viewer.who)
    if after == before:
        return Done(f"Review resolved {decided}; the status stays {after}")
    return Done(f"Review resolved: {before} → {after}")
