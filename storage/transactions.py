"""Transactions, their event history, and the one way their status ever changes.

``apply_event`` is the fence of docs/ARCHITECTURE.md §5.2: it asks the state machine what
an event means for the status it read, then writes the new status with a compare-and-set
on ``version`` in the same database transaction as the event rows and the follow-up outbox
messages.
Zero rows updated means another writer moved first: reload and decide again.

A success settles only for the money asked for; anything else is held for an operator
(storage.reviews), and ``resolve_review`` is the operator's way out of a hold.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy import ColumnElement, func, select, true
from sqlalchemy.orm import Session

from connxt.metrics import CONFLICTS, TRANSITIONS
from state_machine import TERMINAL, Decision, Event, Source, Status, apply
from storage.models import Transaction, TransactionEvent
from storage.reviews import (
    Reported,
    is_held,
    open_review,
    record_decision,
    resolution,
    unresolved,
)
from storage.transitions import Seen, move, read_seen

log = structlog.get_logger()


class TransactionVanished(RuntimeError):
    """The row disappeared between read and write (never expected)."""


class NothingToResolve(Exception):
    """The transaction is not held for an operator: never was, or was decided already."""


@dataclass(frozen=True)
class Applied:
    decision: Decision
    txn: Seen  # as read before the decision was written


def apply_event(
    session: Session,
    txn_id: str,
    event: Event,
    source: Source,
    reason: str | None = None,
    updates: Callable[[Seen], dict[str, Any]] | dict[str, Any] | None = None,
    reported: Reported | None = None,
    seen: Seen | None = None,
) -> Applied:
    """Apply ``event`` to the transaction, in the caller's database transaction.

    ``updates`` are extra column values written with the transition (navigation, PSP id,
    error); a callable receives the row as read. They are written only when the status
    actually moves, so a late event can never overwrite what an earlier one set.

    ``reported`` is the money the PSP stated with its answer. A PSP_COMPLETED settles only
    when it is exactly the transaction's money; otherwise (other money, or none stated) the
    transaction is held for an operator and nothing but the operator settles it.

    ``seen`` spares the first read when the caller has just read (or written) the row; a
    stale one costs a compare-and-set that fails, and then the row is read again.
    """
    for _attempt in range(10):
        txn = seen or read_seen(session, txn_id)
        seen = None
        if txn is None:
            raise TransactionVanished(txn_id)
        settling, decision = decide(txn, event, reported)
        if decision.noop:
            if decision.review is not None:
                # Opened once: a repeat of what opened it (a duplicate webhook, a second
                # inquiry) finds the review there and adds nothing.
                if txn.review_reason is None and not open_review(
                    session, txn, decision.review, source, reported
                ):
                    continue
            elif decision.conflict:
                _record_conflict(session, txn, settling, source, decision, reason)
            return Applied(decision, txn)
        values = updates(txn) if callable(updates) else dict(updates or {})
        if not move(session, txn, decision, source, reason, values):
            continue  # another writer moved first: read again, decide again
        TRANSITIONS.labels(decision.status.value, source.value).inc()
        log.info(
            "transaction.transition",
            txn_id=txn_id,
            event_name=settling.value,
            source=source.value,
            to_status=decision.status.value,
        )
        return Applied(decision, txn)
    raise RuntimeError(f"could not settle {txn_id} after repeated concurrent updates")


def decide(txn: Seen, event: Event, reported: Reported | None) -> tuple[Event, Decision]:
    """What ``event`` means for the transaction as read: the event as checked against the
    money (see ``_checked``) and the state machine's decision. Pure."""
    settling = _checked(event, reported, txn)
    return settling, apply(Status(txn.status), settling, held=is_held(txn))


def _checked(event: Event, reported: Reported | None, txn: Seen) -> Event:
    """A PSP success for other money than the transaction's (or for money it did not
    name) is a mismatch, whichever path brought it: answer, webhook or inquiry."""
    if event is Event.PSP_COMPLETED and (reported is None or not reported.matches(txn)):
        return Event.PSP_MISMATCH
    return event


def _record_conflict(
    session: Session,
    txn: Transaction,
    event: Event,
    source: Source,
    decision: Decision,
    reason: str | None,
) -> None:
    """A PSP contradicting a final state: keep the state, leave a trail for review."""
    session.add(
        TransactionEvent(
            txn_id=txn.id,
            from_status=txn.status,
            to_status=txn.status,
            source=source.value,
            reason=f"ignored {event.value}: {decision.reason}" + (f" ({reason})" if reason else ""),
        )
    )
    session.flush()
    CONFLICTS.labels(source.value).inc()
    log.warning(
        "transaction.conflicting_event",
        txn_id=txn.id,
        status=txn.status,
        event_name=event.value,
        source=source.value,
    )


def resolve_review(session: Session, txn_id: str, decided: Status, note: str) -> Transaction:
    """An operator's decision on a held transaction; flushes, never commits.

    An open one moves to ``decided`` through the state machine (the merchant is notified
    of the outcome as for any terminal transition). A terminal one (a late success) keeps
    its status: terminal statuses never change, so the decision is recorded beside it.
    Raises LookupError for an unknown id, NothingToResolve when nothing is held.
    """
    if decided not in (Status.SUCCESS, Status.FAILED):
        raise ValueError(f"an operator decides SUCCESS or FAILED, not {decided}")
    for attempt in range(10):
        txn = session.get(Transaction, txn_id, populate_existing=attempt > 0)
        if txn is None:
            raise LookupError(txn_id)
        if not is_held(txn):
            raise NothingToResolve(txn_id)
        reason = f"{txn.review_reason} resolved {decided.value}: {note}"
        if Status(txn.status) in TERMINAL:
            if record_decision(session, txn, decided, note, reason):
                return txn
            session.expire(txn)
            continue
        event = Event.RESOLVE_SUCCESS if decided is Status.SUCCESS else Event.RESOLVE_FAILED
        updates = resolution(decided, note)
        if decided is Status.FAILED:
            updates["error"] = {"code": txn.review_reason.upper(), "message": note}
        applied = apply_event(session, txn_id, event, Source.OPERATOR, reason, updates)
        if applied.decision.noop:
            raise NothingToResolve(txn_id)  # decided by another operator meanwhile
        return session.get(Transaction, txn_id, populate_existing=True)
    raise RuntimeError(f"could not resolve {txn_id} after repeated concurrent updates")


def get_for_tenant(
    session: Session, brand_id: str, environment_id: str, txn_id: str
) -> Transaction | None:
    return get_in_scope(session, (brand_id, environment_id), txn_id)


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


# Whose rows a query may see: (brand id, environment id), or None for every tenant's (the
# console's operators, signed in with a CONNXT_OPERATOR_TOKENS token, and nobody else).
Scope = tuple[str, str] | None


def scoped(scope: Scope) -> ColumnElement[bool]:
    """The tenant condition on transactions for ``scope``."""
    if scope is None:
        return true()
    return (Transaction.brand_id == scope[0]) & (Transaction.environment_id == scope[1])


def list_for_tenant(
    session: Session, brand_id: str, environment_id: str, *, limit: int, **filters: Any
) -> Page:
    """One tenant's transactions, newest first (filters: ``list_transactions``)."""
    return list_transactions(session, (brand_id, environment_id), limit=limit, **filters)


def list_transactions(
    session: Session,
    scope: Scope,
    *,
    limit: int,
    after: tuple[datetime, str] | None = None,
    status: str | None = None,
    psp_id: str | None = None,
    flow_action_id: str | None = None,
    action: str | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    review: bool | None = None,
    search: str | None = None,
) -> Page:
    """Newest first; the cursor is the (created_at, id) of the last item of a page.

    ``review=True``: only transactions held for an operator; False: none of those.
    ``action``: DEPOSIT, WITHDRAW or REFUND. ``search``: a transaction id or an order id,
    exactly as given.
    """
    query = select(Transaction).where(scoped(scope))
    if review is not None:
        query = query.where(unresolved() if review else ~unresolved())
    for column, value in (
        (Transaction.status, status),
        (Transaction.psp_id, psp_id),
        (Transaction.flow_action_id, flow_action_id),
        (Transaction.action, action),
    ):
        if value is not None:
            query = query.where(column == value)
    if search:
        query = query.where((Transaction.id == search) | (Transaction.order_id == search))
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


def get_in_scope(session: Session, scope: Scope, txn_id: str) -> Transaction | None:
    """One transaction, if ``scope`` may see it."""
    return session.scalar(select(Transaction).where(Transaction.id == txn_id, scoped(scope)))


def is_open(txn: Transaction) -> bool:
    return Status(txn.status) not in TERMINAL
