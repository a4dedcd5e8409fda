"""The inquiry schedule of the status sweep: when the PSP is asked next about an open transaction.

Each open transaction carries its next look (``next_inquiry_at``, set when it is created);
the sweep (workers.reconcile) claims those that are due and books the look after from
``CONNXT_INQUIRY_SCHEDULE``, in one statement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from connxt.settings import get_settings
from state_machine import Status


@dataclass(frozen=True)
class Due:
    """An open transaction claimed for its scheduled look."""

    txn_id: str
    status: str
    initiate_attempts: int
    connector: str  # the flow target's name: its lane

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


# One statement claims the due rows (SKIP LOCKED: concurrent sweeps never pick the same
# row in one pass) and books each one's next look from the schedule.
_CLAIM = """
WITH due AS (
  SELECT id FROM transactions
  WHERE status IN ('CREATED', 'INITIATED', 'PG_ACCEPTED')
    AND NOT (review_reason IS NOT NULL AND review_resolved_at IS NULL)
    AND {which}
  ORDER BY next_inquiry_at LIMIT :limit
  FOR UPDATE SKIP LOCKED
)
UPDATE transactions t
SET inquiry_count = t.inquiry_count + 1,
    next_inquiry_at = now() + make_interval(secs =>
      (CAST(:schedule AS int[]))[least(t.inquiry_count + 1, :last) + 1])
FROM due, flow_targets ft
WHERE t.id = due.id AND ft.id = t.flow_target_id
RETURNING t.id, t.status, t.initiate_attempts, ft.name AS connector
"""


def claim_query(limit: int, txn_id: str | None = None) -> tuple[str, dict[str, Any]]:
    """The claiming statement and its parameters. The sweep's form (no ``txn_id``) reads
    the partial index ix_transactions_due: open transactions only, by next look."""
    schedule = get_settings().inquiry_schedule
    which = "id = :txn_id" if txn_id is not None else "next_inquiry_at <= now()"
    params = {"limit": limit, "schedule": schedule, "last": len(schedule) - 1, "txn_id": txn_id}
    return _CLAIM.format(which=which), params


def claim_due(session: Session, limit: int, txn_id: str | None = None) -> list[Due]:
    """Claim open transactions whose next look is due (or the one named, due or not) and
    book the look after; a transaction held for an operator waits for the operator."""
    statement, params = claim_query(limit, txn_id)
    rows = session.execute(text(statement), params).all()
    return [Due(r.id, r.status, r.initiate_attempts, r.connector) for r in rows]
