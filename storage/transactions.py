"""Transactions and their event history, as the API, the console and the CLI read them:
one tenant's transactions, one of them, its events, a parent's refunds.

How a status changes is storage.decisions (deciding) and storage.status_writes (the
statements that write it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, func, select, true
from sqlalchemy.orm import Session

from state_machine import TERMINAL, Status
from storage.models import Transaction, TransactionEvent
from storage.reviews import unresolved


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
    # An aggregate without GROUP BY answers one row, and coalesce makes it a number.
    total = session.execute(
        select(func.coalesce(func.sum(Transaction.amount), 0)).where(
            Transaction.parent_txn_id == parent_txn_id,
            Transaction.status.not_in([Status.REJECTED.value, Status.FAILED.value]),
        )
    ).scalar_one()
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
            # The first bound is the listing index's own key: a deep page starts where
            # the cursor points instead of filtering every newer row out on the way.
            Transaction.created_at <= after[0],
            (Transaction.created_at < after[0])
            | ((Transaction.created_at == after[0]) & (Transaction.id < after[1])),
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
