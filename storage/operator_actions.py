"""What an operator asked for, kept in the transaction's history.

Every action taken from the console (a reconciliation, a webhook replayed, a notification
sent again) is one event row beside the transaction's status steps: the status does not
move, the source is ``operator`` and the reason says what was asked and by whom. It is
written in the same database transaction as the action itself, so neither exists alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from state_machine import Source
from storage import inbox
from storage.models import InboxMessage, Psp, Transaction
from storage.status_writes import record_unmoved


def record_operator_action(session: Session, txn: Transaction, what: str, operator: str) -> None:
    record_unmoved(session, txn, Source.OPERATOR, f"{what} (by {operator})")


def due_now(session: Session, txn_id: str) -> None:
    """Make the transaction's next look due at once: the reconciliation sweep's next pass
    takes it and decides, as for any due transaction, whether to initiate or to inquire."""
    session.execute(
        update(Transaction).where(Transaction.id == txn_id).values(next_inquiry_at=func.now())
    )


@dataclass(frozen=True)
class Rearmed:
    """A stored PSP notification as it was before it was made new again (for the audit)."""

    inbox_id: int
    txn_id: str | None
    parked_at: datetime | None
    result: str | None
    tenant: tuple[str, str]  # its PSP account's brand and environment


def rearm_webhook(session: Session, inbox_id: int, txn_id: str | None = None) -> Rearmed | None:
    """Make a stored PSP notification new again for a replay (storage.inbox.rearm); None
    when there is none by this id, or none of the transaction named."""
    query = (
        select(
            InboxMessage.txn_id,
            InboxMessage.parked_at,
            InboxMessage.result,
            Psp.brand_id,
            Psp.environment_id,
        )
        .join(Psp, Psp.id == InboxMessage.psp_id)
        .where(InboxMessage.id == inbox_id)
    )
    if txn_id is not None:
        query = query.where(InboxMessage.txn_id == txn_id)
    row = session.execute(query).first()
    if row is None:
        return None
    inbox.rearm(session, inbox_id)
    return Rearmed(inbox_id, row.txn_id, row.parked_at, row.result, (row[3], row[4]))
