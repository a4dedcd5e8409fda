"""Transactions, their event history, and the one way their status ever changes.

``apply_event`` is the fence of DESIGN §6: it asks the state machine what an event means
for the status it read, then writes the new status with a compare-and-set on ``version``
in the same database transaction as the event rows and the follow-up outbox messages.
Zero rows updated means another writer moved first: reload and decide again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from connxt.metrics import CONFLICTS, TRANSITIONS
from state_machine import TERMINAL, Command, Decision, Event, Source, Status, apply
from storage.models import Transaction, TransactionEvent
from storage.notifications import ensure_notification
from storage.outbox import add_message

log = structlog.get_logger()

NOTIFY_TASK = "notify.merchant"


class TransactionVanished(RuntimeError):
    """The row disappeared between read and write (never expected)."""


@dataclass(frozen=True)
class Applied:
    decision: Decision
    txn: Transaction


def record_steps(
    session: Session, txn_id: str, decision: Decision, source: Source, reason: str | None
) -> None:
    session.add_all(
        TransactionEvent(
            txn_id=txn_id,
            from_status=step.from_status.value,
            to_status=step.to_status.value,
            source=source.value,
            reason=reason,
        )
        for step in decision.steps
    )


def apply_event(
    session: Session,
    txn_id: str,
    event: Event,
    source: Source,
    reason: str | None = None,
    updates: Callable[[Transaction], dict[str, Any]] | dict[str, Any] | None = None,
) -> Applied:
    """Apply ``event`` to the transaction; flushes, never commits.

    ``updates`` are extra column values written with the transition (navigation, PSP id,
    error); a callable receives the freshly read row. They are written only when the
    status actually moves, so a late event can never overwrite what an earlier one set.
    """
    for attempt in range(10):
        # The row already in this session is a fine first guess: the version check below
        # catches it being stale, and only then is it read again.
        txn = session.get(Transaction, txn_id, populate_existing=attempt > 0)
        if txn is None:
            raise TransactionVanished(txn_id)
        decision = apply(Status(txn.status), event)
        if decision.noop:
            if decision.conflict:
                # A PSP contradicting a final state: keep the state, leave a trail for review.
                session.add(
                    TransactionEvent(
                        txn_id=txn_id,
                        from_status=txn.status,
                        to_status=txn.status,
                        source=source.value,
                        reason=f"ignored {event.value}: {decision.reason}"
                        + (f" ({reason})" if reason else ""),
                    )
                )
                session.flush()
                CONFLICTS.labels(source.value).inc()
                log.warning(
                    "transaction.conflicting_event",
                    txn_id=txn_id,
                    status=txn.status,
                    event_name=event.value,
                    source=source.value,
                )
            return Applied(decision, txn)
        values = updates(txn) if callable(updates) else dict(updates or {})
        values.update(status=decision.status.value, version=txn.version + 1, updated_at=func.now())
        moved = session.execute(
            update(Transaction)
            .where(Transaction.id == txn_id, Transaction.version == txn.version)
            .values(**values)
        ).rowcount
        if moved == 0:
            session.expire(txn)
            continue
        record_steps(session, txn_id, decision, source, reason)
        TRANSITIONS.labels(decision.status.value, source.value).inc()
        if Command.NOTIFY_MERCHANT in decision.commands:
            # The notification row is born with the transition: if the message below is
            # lost, the notify sweep still finds the row and delivers it.
            notification_id = ensure_notification(
                session, txn_id, txn.environment_id, f"transaction.{decision.status.value.lower()}"
            )
            add_message(
                session, NOTIFY_TASK, {"txn_id": txn_id, "notification_id": notification_id}
            )
        session.flush()
        session.expire(txn)  # reloaded only if the caller reads it
        log.info(
            "transaction.transition",
            txn_id=txn_id,
            event_name=event.value,
            source=source.value,
            to_status=decision.status.value,
        )
        return Applied(decision, txn)
    raise RuntimeError(f"could not settle {txn_id} after repeated concurrent updates")


def get_for_tenant(
    session: Session, brand_id: str, environment_id: str, txn_id: str
) -> Transaction | None:
    return session.scalar(
        select(Transaction).where(
            Transaction.id == txn_id,
            Transaction.brand_id == brand_id,
            Transaction.environment_id == environment_id,
        )
    )


def events_of(session: Session, txn_id: str) -> list[TransactionEvent]:
    return list(
        session.scalars(
            select(TransactionEvent)
            .where(TransactionEvent.txn_id == txn_id)
            .order_by(TransactionEvent.id)
        )
    )


def refunded_total(session: Session, parent_txn_id: str) -> Decimal:
    """Refunds that took or may still take money: everything not REJECTED or FAILED."""
    total = session.scalar(
        select(func.coalesce(func.sum(Transaction.amount), 0)).where(
            Transaction.parent_txn_id == parent_txn_id,
            Transaction.status.not_in([Status.REJECTED.value, Status.FAILED.value]),
        )
    )
    return Decimal(total)


@dataclass(frozen=True)
class Page:
    items: list[Transaction]
    next_cursor: tuple[datetime, str] | None


def list_for_tenant(
    session: Session,
    brand_id: str,
    environment_id: str,
    *,
    limit: int,
    after: tuple[datetime, str] | None = None,
    status: str | None = None,
    psp_id: str | None = None,
    flow_action_id: str | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
) -> Page:
    """Newest first; the cursor is the (created_at, id) of the last item of a page."""
    query = select(Transaction).where(
        Transaction.brand_id == brand_id, Transaction.environment_id == environment_id
    )
    for column, value in (
        (Transaction.status, status),
        (Transaction.psp_id, psp_id),
        (Transaction.flow_action_id, flow_action_id),
    ):
        if value is not None:
            query = query.where(column == value)
    if created_from is not None:
        query = query.where(Transaction.created_at >= created_from)
    if created_to is not None:
        query = query.where(Transaction.created_at < created_to)
    if after is not None:
        query = query.where(
            (Transaction.created_at < after[0])
            | ((Transaction.created_at == after[0]) & (Transaction.id < after[1]))
        )
    rows = list(
        session.scalars(
            query.order_by(Transaction.created_at.desc(), Transaction.id.desc()).limit(limit + 1)
        )
    )
    more = len(rows) > limit
    rows = rows[:limit]
    cursor = (rows[-1].created_at, rows[-1].id) if more and rows else None
    return Page(rows, cursor)


def is_open(txn: Transaction) -> bool:
    return Status(txn.status) not in TERMINAL
