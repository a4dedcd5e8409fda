"""What an operator asked for, kept in the transaction's history.

Every action taken from the console (a reconciliation, a webhook replayed, a notification
sent again) is one event row beside the transaction's status steps: the status does not
move, the source is ``operator`` and the reason says what was asked and by whom. It is
written in the same database transaction as the action itself, so neither exists alone.
"""

from __future__ import annotations

from sqlalchemy import func, update
from sqlalchemy.orm import Session

from state_machine import Source
from storage.models import Transaction, TransactionEvent


def record_operator_action(session: Session, txn: Transaction, what: str, operator: str) -> None:
    session.add(
        TransactionEvent(
            txn_id=txn.id,
            from_status=txn.status,
            to_status=txn.status,
            source=Source.OPERATOR.value,
            reason=f"{what} (by {operator})",
        )
    )
    session.flush()


def due_now(session: Session, txn_id: str) -> None:
    """Make the transaction's next look due at once: the reconciliation sweep's next pass
    takes it and decides, as for any due transaction, whether to initiate or to inquire."""
    session.execute(
        update(Transaction).where(Transaction.id == txn_id).values(next_inquiry_at=func.now())
    )
