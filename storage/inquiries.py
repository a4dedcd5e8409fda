"""Inquiries: what asking a PSP about a transaction reads (``to_ask``), and the inquiries
asked for by traffic nobody authenticated: a customer's browser coming back from the PSP,
a webhook that cannot be verified.

Either of those is only a hint to ask the PSP, and either can be sent in a loop by anyone who knows
a transaction id. So each transaction has the PSP asked on such a hint at most once per
window: the first hint books the inquiry (a compare-and-set on
``transactions.inquiry_requested_at``, in the same database transaction as its outbox
row), and the others within the window book nothing. A hint dropped this way loses
nothing: the inquiry already booked answers it, and the reconciliation schedule keeps
asking about every open transaction regardless.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from connxt import tasks
from connxt.settings import get_settings
from state_machine import Status
from storage.models import Transaction
from storage.outbox import add_message
from storage.reviews import is_held

log = structlog.get_logger()


def request_inquiry(session: Session, txn_id: str, queue: str) -> bool:
    """Book an inquiry for an unauthenticated hint; False when one was booked within the
    window (``CONNXT_HINT_INQUIRY_INTERVAL_SECONDS``)."""
    window = timedelta(seconds=get_settings().hint_inquiry_interval_seconds)
    booked = session.execute(
        update(Transaction)
        .where(
            Transaction.id == txn_id,
            or_(
                Transaction.inquiry_requested_at.is_(None),
                Transaction.inquiry_requested_at <= func.now() - window,
            ),
        )
        .values(inquiry_requested_at=func.now())
        .returning(Transaction.id)
        # Nothing loaded in the session needs this column refreshed.
        .execution_options(synchronize_session=False)
    ).first()
    if booked is None:
        log.debug("inquiry.throttled", txn_id=txn_id)
        return False
    add_message(session, tasks.INQUIRE, {"txn_id": txn_id}, queue)
    return True


@dataclass(frozen=True)
class ToAsk:
    """A transaction as an inquiry about it needs it."""

    status: Status
    held: bool  # waiting for an operator: nothing but the operator settles it
    psp_id: str
    psp_txn_id: str | None
    action: str
    created_at: datetime


def to_ask(session: Session, txn_id: str) -> ToAsk | None:
    """The transaction an inquiry is about; None for an unknown id."""
    row = session.execute(
        select(
            Transaction.status,
            Transaction.review_reason,
            Transaction.review_resolved_at,
            Transaction.psp_id,
            Transaction.psp_txn_id,
            Transaction.action,
            Transaction.created_at,
        ).where(Transaction.id == txn_id)
    ).first()
    if row is None:
        return None
    return ToAsk(
        Status(row.status), is_held(row), row.psp_id, row.psp_txn_id, row.action, row.created_at
    )
