"""The inbox: PSP notifications stored as received, each processed once.

The unique key (PSP, event identity) makes a duplicate delivery an insert that does
nothing; only a newly stored row is enqueued. A worker claims a set of rows in one
statement (``claim_many``: attempts counted, transactions read), and ``record`` writes
what the rules made of them (workers.webhook_rules), each row's mark in the same database
transaction as its effect, so a row is marked exactly when its effect is committed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from connxt import tasks
from storage import decisions
from storage.decisions import Decided
from storage.inbox_writer import slot_key
from storage.inquiries import request_inquiry
from storage.models import InboxMessage, Psp
from storage.outbox import add_message
from storage.status_writes import SEEN_COLUMNS, Seen


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
            event_key=slot_key(event_key, verified),
            txn_id=txn_id,
            headers=headers,
            body=body,
            verified=verified,
        )
        .on_conflict_do_nothing(constraint="uq_inbox_psp_event")
        .returning(InboxMessage.id)
    ).scalar_one_or_none()


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
    transaction as it stands (storage.status_writes.Seen). ``txn`` is None when the row
    names no transaction of the PSP account it came to: not one to apply, nor to ask
    about."""

    psp_id: str
    headers: dict[str, str]
    body: bytes
    attempts: int
    txn_id: str | None
    txn: Seen | None


_CLAIM_MANY = f"""
WITH claimed AS (
  UPDATE inbox SET attempts = attempts + 1
  WHERE id = ANY(%(ids)s) AND processed_at IS NULL AND parked_at IS NULL
  RETURNING id, psp_id, headers, body, attempts, txn_id
)
SELECT claimed.id AS inbox_id, claimed.psp_id, claimed.headers, claimed.body,
       claimed.attempts, claimed.txn_id, {", ".join(f"t.{c}" for c in SEEN_COLUMNS)}
FROM claimed
-- Only a transaction of the account the notification came to: the ingress checks this
-- before storing, and rows stored otherwise (replayed, re-driven, older) meet it here.
LEFT JOIN transactions t ON t.id = claimed.txn_id AND t.psp_id = claimed.psp_id
"""


def claim_many(session: Session, inbox_ids: list[int]) -> dict[int, Claimed]:
    """Count an attempt at each notification not yet done and read what applying it
    needs, in one statement: the ones not processed or parked meanwhile, by inbox id. The
    caller commits at once, so a notification that keeps killing workers is seen to do
    so."""
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
    """Record what became of each notification, in one statement: (inbox id, result,
    parked) each. A parked row is left for an operator (``connxt webhooks replay``), any
    other is done."""
    if marks:
        payload = [{"id": i, "result": result, "parked": parked} for i, result, parked in marks]
        session.connection().exec_driver_sql(_MARK_MANY, {"marks": orjson.dumps(payload).decode()})


def transactions_of(session: Session, inbox_ids: list[int]) -> dict[int, str | None]:
    """The transaction each stored notification names (None: none), by inbox id; a row
    that is gone (pruned) is left out."""
    rows = session.execute(
        select(InboxMessage.id, InboxMessage.txn_id).where(InboxMessage.id.in_(inbox_ids))
    )
    return {row.id: row.txn_id for row in rows}


@dataclass(frozen=True)
class Inquiry:
    """The PSP to be asked about a transaction, on its lane."""

    txn_id: str
    queue: str
    # A hint nobody authenticated: at most one inquiry per window (storage.inquiries).
    throttled: bool = False


@dataclass(frozen=True)
class Verdict:
    """What becomes of one stored notification, as the rules decided
    (workers.webhook_rules); ``record`` writes it."""

    inbox_id: int
    outcome: str  # what the handler reports: a status, a review, "ignored", "parked", ...
    result: str = ""  # what the row records (for a throttled inquiry: whether it asked)
    parked: bool = False
    decided: Decided | None = None  # a decision to write with the mark
    inquiry: Inquiry | None = None


# What the row of an unverified notification records: whether it had the PSP asked.
_HINTED = {
    True: "unverified: the PSP is asked instead",
    False: "unverified: the PSP was asked just now",
}


def record(session: Session, verdicts: Sequence[Verdict]) -> set[int]:
    """Write what the rules decided for a set of notifications, in the caller's database
    transaction, each row's mark with its effect: the decisions (storage.decisions.write:
    the transitions in one statement), the inquiries, and the marks in one more statement.

    Returns the inbox ids of decisions another writer got ahead of: nothing of theirs is
    written, the mark neither; the caller reads the transaction again and decides again.
    """
    lost_txns = decisions.write(session, [v.decided for v in verdicts if v.decided is not None])
    marks: list[tuple[int, str, bool]] = []
    lost: set[int] = set()
    for verdict in verdicts:
        if verdict.decided is not None and verdict.decided.seen.id in lost_txns:
            lost.add(verdict.inbox_id)
            continue
        result, inquiry = verdict.result, verdict.inquiry
        if inquiry is not None and inquiry.throttled:
            result = _HINTED[request_inquiry(session, inquiry.txn_id, inquiry.queue)]
        elif inquiry is not None:
            add_message(session, tasks.INQUIRE, {"txn_id": inquiry.txn_id}, inquiry.queue)
        marks.append((verdict.inbox_id, result, verdict.parked))
    mark_many(session, marks)
    return lost
