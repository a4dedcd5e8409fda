"""Healing sweeps run by beat: reconciliation of stuck transactions, outbox and inbox
re-drive (`reconcile.*`).

Every sweep claims its rows with `FOR UPDATE SKIP LOCKED`, so several beat instances can
run at once without sending anything twice in the same pass; the tasks they send are
idempotent in any case.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import select, update

from connxt.settings import get_settings
from state_machine import Status
from storage import inbox
from storage.db import session_scope
from storage.models import Transaction
from storage.outbox import relay_batch
from storage.reviews import unresolved
from workers.app import celery_app, publish_many
from workers.inquiry import inquire_locked

log = structlog.get_logger()

# CREATED is here too: a transaction whose `initiate` message was lost is started again.
_OPEN = (Status.CREATED.value, Status.INITIATED.value, Status.PG_ACCEPTED.value)


def _next_inquiry(count: int) -> datetime:
    schedule = get_settings().inquiry_schedule
    return datetime.now(UTC) + timedelta(seconds=schedule[min(count, len(schedule) - 1)])


@dataclass(frozen=True)
class Due:
    txn_id: str
    status: str
    initiate_attempts: int

    @property
    def needs_initiation(self) -> bool:
        """Never sent, or its initiation was cut short (worker died, PSP timed out or 5xx)
        and tries remain: initiate again, which first looks for the payment at the PSP."""
        if self.status == Status.CREATED.value:
            return True
        return (
            self.status == Status.INITIATED.value
            and self.initiate_attempts < get_settings().initiate_max_attempts
        )


def due_for_inquiry(limit: int = 200, txn_id: str | None = None) -> list[Due]:
    """Claim open transactions whose next look is due and book the one after.

    Claimed with SKIP LOCKED and re-booked in the same transaction, so concurrent sweeps
    never pick the same row twice in one pass.
    """
    with session_scope() as session:
        query = select(
            Transaction.id,
            Transaction.status,
            Transaction.inquiry_count,
            Transaction.initiate_attempts,
        ).where(Transaction.status.in_(_OPEN), ~unresolved())  # a hold waits for an operator
        if txn_id is not None:
            query = query.where(Transaction.id == txn_id)
        else:
            query = query.where(Transaction.next_inquiry_at <= datetime.now(UTC))
        rows = session.execute(
            query.order_by(Transaction.next_inquiry_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        for row in rows:
            session.execute(
                update(Transaction)
                .where(Transaction.id == row.id)
                .values(
                    inquiry_count=row.inquiry_count + 1,
                    next_inquiry_at=_next_inquiry(row.inquiry_count + 1),
                )
            )
        return [Due(row.id, row.status, row.initiate_attempts) for row in rows]


@celery_app.task(name="reconcile.sweep")
def sweep(txn_id: str | None = None) -> int:
    due = due_for_inquiry(txn_id=txn_id)
    for i, item in enumerate(due):
        if item.needs_initiation:
            celery_app.send_task("transactions.initiate", kwargs={"txn_id": item.txn_id})
            continue
        # Spread the inquiries out so a backlog never floods a PSP.
        inquire.apply_async(kwargs={"txn_id": item.txn_id}, countdown=min(i * 0.2, 30))
    if due:
        log.info("reconcile.sweep", due=len(due))
    return len(due)


@celery_app.task(name="reconcile.inquire", bind=True, max_retries=5)
def inquire(self, txn_id: str) -> None:
    """A scheduled look at a transaction the PSP has not settled yet."""
    inquire_locked(self, txn_id)


@celery_app.task(name="reconcile.redrive_outbox")
def redrive_outbox() -> int:
    """The relay's safety net: rows older than a few seconds that no relay sent."""
    settings = get_settings()
    with session_scope() as session:
        relayed = relay_batch(
            session,
            publish_many,
            older_than=timedelta(seconds=settings.outbox_redrive_after_seconds),
            limit=200,
            max_attempts=settings.task_max_attempts,
        )
    if relayed.sent or relayed.failed:
        log.info("outbox.redriven", sent=relayed.sent, failed=relayed.failed)
    return relayed.sent


@celery_app.task(name="reconcile.redrive_inbox")
def redrive_inbox() -> int:
    settings = get_settings()
    with session_scope() as session:
        ids = inbox.claim_unprocessed(
            session, timedelta(seconds=settings.inbox_redrive_after_seconds)
        )
    for inbox_id in ids:
        celery_app.send_task("callbacks.webhook", kwargs={"inbox_id": inbox_id})
    if ids:
        log.info("inbox.redriven", count=len(ids))
    return len(ids)
