"""The inbox: PSP notifications stored as received, each processed once.

The unique key (PSP, event identity) makes a duplicate delivery an insert that does
nothing; only a newly stored row is enqueued.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from storage.models import InboxMessage, Psp
from storage.transitions import SEEN_COLUMNS, Seen


def store(
    session: Session,
    psp_id: str,
    event_key: str,
    txn_id: str | None,
    headers: dict[str, str],
    body: bytes,
    verified: bool,
) -> int | None:
    """The new row's id, or None when this notification was stored before."""
    return session.execute(
        insert(InboxMessage)
        .values(
            psp_id=psp_id,
            event_key=event_key[:300],
            txn_id=txn_id,
            headers=headers,
            body=body,
            verified=verified,
        )
        .on_conflict_do_nothing(constraint="uq_inbox_psp_event")
        .returning(InboxMessage.id)
    ).scalar_one_or_none()


def count_attempt(session: Session, inbox_id: int) -> int:
    return session.execute(
        update(InboxMessage)
        .where(InboxMessage.id == inbox_id)
        .values(attempts=InboxMessage.attempts + 1)
        .returning(InboxMessage.attempts)
    ).scalar_one()


def mark(session: Session, inbox_id: int, result: str, parked: bool = False) -> None:
    now = datetime.now(UTC)
    session.execute(
        update(InboxMessage)
        .where(InboxMessage.id == inbox_id)
        .values(
            processed_at=None if parked else now,
            parked_at=now if parked else None,
            result=result[:500],
        )
    )


def claim_unprocessed(session: Session, older_than: timedelta, limit: int = 200) -> list[int]:
    cutoff = datetime.now(UTC) - older_than
    return list(
        session.scalars(
            select(InboxMessage.id)
            .where(
                InboxMessage.processed_at.is_(None),
                InboxMessage.parked_at.is_(None),
                InboxMessage.received_at < cutoff,
            )
            .order_by(InboxMessage.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )


def rearm(session: Session, inbox_id: int) -> None:
    """Make a stored notification new again (un-parked, attempts and result cleared), so
    that processing it once more is an ordinary first attempt."""
    session.execute(
        update(InboxMessage)
        .where(InboxMessage.id == inbox_id)
        .values(parked_at=None, processed_at=None, attempts=0, result=None)
    )


def parked(session: Session, scope: tuple[str, str] | None, limit: int = 100) -> list[InboxMessage]:
    """Parked notifications, newest first: of the PSP accounts of one (brand, environment),
    or of every tenant when ``scope`` is None (operators)."""
    query = select(InboxMessage).where(InboxMessage.parked_at.is_not(None))
    if scope is not None:
        query = query.join(Psp, Psp.id == InboxMessage.psp_id).where(
            Psp.brand_id == scope[0], Psp.environment_id == scope[1]
        )
    return list(session.scalars(query.order_by(InboxMessage.parked_at.desc()).limit(limit)))


def for_transaction(session: Session, txn_id: str) -> list[InboxMessage]:
    return list(
        session.scalars(
            select(InboxMessage).where(InboxMessage.txn_id == txn_id).order_by(InboxMessage.id)
        )
    )


@dataclass(frozen=True)
class Claimed:
    """A stored notification taken for processing, its attempt counted, and its
    transaction as it stands (storage.transitions.Seen). ``txn`` is None when the row
    names no transaction of the PSP account it came to: not one to apply, nor to ask
    about."""

    psp_id: str
    headers: dict[str, str]
    body: bytes
    attempts: int
    txn_id: str | None
    txn: Seen | None


_CLAIM = f"""
WITH claimed AS (
  UPDATE inbox SET attempts = attempts + 1
  WHERE id = %(id)s AND processed_at IS NULL AND parked_at IS NULL
  RETURNING psp_id, headers, body, attempts, txn_id
)
SELECT claimed.psp_id, claimed.headers, claimed.body, claimed.attempts, claimed.txn_id,
       {", ".join(f"t.{c}" for c in SEEN_COLUMNS)}
FROM claimed
-- Only a transaction of the account the notification came to: the ingress checks this
-- before storing, and rows stored otherwise (replayed, re-driven, older) meet it here.
LEFT JOIN transactions t ON t.id = claimed.txn_id AND t.psp_id = claimed.psp_id
"""


def claim(session: Session, inbox_id: int) -> Claimed | None:
    """Count an attempt at a notification not yet done and read what applying it needs,
    in one statement; None when it was processed or parked meanwhile. The caller commits
    at once, so a notification that keeps killing workers is seen to do so."""
    row = session.connection().exec_driver_sql(_CLAIM, {"id": inbox_id}).first()
    if row is None:
        return None
    txn = Seen(*row[5:]) if row[5] is not None else None
    return Claimed(row.psp_id, row.headers, bytes(row.body), row.attempts, row.txn_id, txn)


_CLAIM_MANY = f"""
WITH claimed AS (
  UPDATE inbox SET attempts = attempts + 1
  WHERE id = ANY(%(ids)s) AND processed_at IS NULL AND parked_at IS NULL
  RETURNING id, psp_id, headers, body, attempts, txn_id
)
SELECT claimed.id AS inbox_id, claimed.psp_id, claimed.headers, claimed.body,
       claimed.attempts, claimed.txn_id, {", ".join(f"t.{c}" for c in SEEN_COLUMNS)}
FROM claimed
LEFT JOIN transactions t ON t.id = claimed.txn_id AND t.psp_id = claimed.psp_id
"""


def claim_many(session: Session, inbox_ids: list[int]) -> dict[int, Claimed]:
    """``claim`` for a batch, in one statement: the ones not yet done, by inbox id."""
    rows = session.connection().exec_driver_sql(_CLAIM_MANY, {"ids": inbox_ids})
    return {
        row.inbox_id: Claimed(
            row.psp_id,
            row.headers,
            bytes(row.body),
            row.attempts,
            row.txn_id,
            Seen(*row[6:]) if row[6] is not None else None,
        )
        for row in rows
    }


_MARK_MANY = """
UPDATE inbox SET
  processed_at = CASE WHEN m.parked THEN NULL ELSE now() END,
  parked_at = CASE WHEN m.parked THEN now() END,
  result = left(m.result, 500)
FROM jsonb_to_recordset(%(marks)s::jsonb) AS m(id bigint, result text, parked bool)
WHERE inbox.id = m.id
"""


def mark_many(session: Session, marks: list[tuple[int, str, bool]]) -> None:
    """``mark`` for a batch, in one statement: (inbox id, result, parked) each."""
    if marks:
        payload = [{"id": i, "result": result, "parked": parked} for i, result, parked in marks]
        session.connection().exec_driver_sql(_MARK_MANY, {"marks": orjson.dumps(payload).decode()})
