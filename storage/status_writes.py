"""The statements that write a status: a transition as one statement (the compare-and-set,
its event rows, and for a terminal status the merchant notification and its outbox
message), a set of them as one (``move_many``), an initiation attempt booked
(``start_attempts``), and the PSP exchanges kept beside them.

storage.decisions decides (through the state machine) and calls these to write the
decision. One round trip replaces the read-modify-write of the ORM (a SELECT, an UPDATE,
an INSERT per event, the notification's INSERT, the outbox row's INSERT): on the hot paths
a transition was costing more in database round trips and object bookkeeping than
everything else the worker does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any, cast

import orjson
from sqlalchemy import ColumnElement, func, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from connxt import tasks
from connxt.ids import random_id
from state_machine import Command, Decision, Source
from storage.models import Transaction, TransactionEvent
from storage.outbox import CHANNEL


@dataclass(frozen=True)
class Seen:
    """A transaction as last read: what deciding and the compare-and-set need."""

    id: str
    status: str
    version: int
    environment_id: str
    amount: Decimal
    currency: str
    review_reason: str | None
    review_resolved_at: datetime | None


SEEN_COLUMNS = (
    "id",
    "status",
    "version",
    "environment_id",
    "amount",
    "currency",
    "review_reason",
    "review_resolved_at",
)


_READ_SEEN = f"SELECT {', '.join(SEEN_COLUMNS)} FROM transactions WHERE id = ANY(%(ids)s)"


def read_seen(session: Session, txn_id: str) -> Seen | None:
    return read_seen_many(session, [txn_id]).get(txn_id)


def read_seen_many(session: Session, txn_ids: list[str]) -> dict[str, Seen]:
    """The transactions as they stand now, by id (an unknown id is left out)."""
    rows = session.connection().exec_driver_sql(_READ_SEEN, {"ids": list(txn_ids)})
    return {row.id: Seen(*row) for row in rows}


_JSON_COLUMNS = frozenset(
    column.name for column in Transaction.__table__.columns if isinstance(column.type, JSONB)
)


@lru_cache(maxsize=64)
def _statement(columns: tuple[str, ...], terminal: bool) -> str:
    sets = "".join(
        f", {name} = %({name})s" + ("::jsonb" if name in _JSON_COLUMNS else "") for name in columns
    )
    notify = (
        """,
note AS (
  INSERT INTO notifications (id, txn_id, environment_id, event_type, status, next_attempt_at)
  SELECT %(notification_id)s, id, environment_id, %(event_type)s, 'PENDING', now() FROM moved
  ON CONFLICT ON CONSTRAINT uq_notifications_txn_event DO NOTHING
  RETURNING id, txn_id
),
message AS (
  INSERT INTO outbox (task, args)
  SELECT %(notify_task)s, jsonb_build_object('txn_id', txn_id, 'notification_id', id) FROM note
)"""
        if terminal
        else ""
    )
    woken = f"(SELECT pg_notify('{CHANNEL}', '') FROM note)" if terminal else "NULL"
    sql = f"""
WITH moved AS (
  UPDATE transactions SET status = %(to_status)s, version = version + 1,
    updated_at = now(){sets}
  WHERE id = %(id)s AND version = %(version)s
  RETURNING id, environment_id
),
steps AS (
  INSERT INTO transaction_events (txn_id, from_status, to_status, source, reason)
  SELECT moved.id, step.f, step.t, %(source)s, %(reason)s
  FROM moved, unnest(%(step_from)s::text[], %(step_to)s::text[]) WITH ORDINALITY AS step(f, t, n)
  ORDER BY step.n
){notify}
SELECT (SELECT count(*) FROM moved) AS moved, {woken} AS woken
"""
    # Compact: psycopg caches the parsing of statements only up to 4 KB of text.
    return " ".join(sql.split())


def _param(name: str, value: Any) -> Any:
    if name in _JSON_COLUMNS and value is not None:
        return orjson.dumps(value, default=str).decode()
    return value


def move(
    session: Session,
    seen: Seen,
    decision: Decision,
    source: Source,
    reason: str | None,
    values: dict[str, Any],
) -> bool:
    """Write ``decision`` if the row is still at ``seen.version``; False when another
    writer moved first (nothing written: the caller reads again and decides again).

    ``values`` are plain column values written with the transition (no SQL expressions).
    """
    columns = tuple(sorted(values))
    # The state machine asks for the merchant's notification (a terminal status).
    terminal = Command.NOTIFY_MERCHANT in decision.commands
    params: dict[str, Any] = {name: _param(name, values[name]) for name in columns}
    params.update(
        id=seen.id,
        version=seen.version,
        to_status=decision.status.value,
        source=source.value,
        reason=reason,
        step_from=[step.from_status.value for step in decision.steps],
        step_to=[step.to_status.value for step in decision.steps],
    )
    if terminal:
        params.update(
            notification_id=random_id("ntf"),
            event_type=f"transaction.{decision.status.value.lower()}",
            notify_task=tasks.NOTIFY,
        )
    row = session.connection().exec_driver_sql(_statement(columns, terminal), params).one()
    moved: int = row.moved
    return moved == 1


_KEEP_EXCHANGES = """
WITH v AS (
  SELECT * FROM jsonb_to_recordset(%(rows)s::jsonb) AS v(id text, psp_meta jsonb)
)
UPDATE transactions t SET psp_meta = v.psp_meta
FROM v WHERE t.id = ANY(ARRAY(SELECT id FROM v)) AND v.id = t.id
"""
_KEEP_EXCHANGES = " ".join(_KEEP_EXCHANGES.split())


def write_at_version(
    session: Session, txn: Any, values: dict[str, Any], *also: ColumnElement[bool]
) -> bool:
    """Write ``values`` to the transaction's row (its version moved on, ``updated_at``
    now) only while it is at the version ``txn`` was read at and ``also`` holds. False
    when another writer changed it first: the caller reloads and decides again."""
    # An UPDATE's result is a CursorResult, which counts rows; Session.execute is typed
    # for any statement, so it says only Result.
    moved = cast(
        CursorResult[Any],
        session.execute(
            update(Transaction)
            .where(Transaction.id == txn.id, Transaction.version == txn.version, *also)
            .values(**values, version=txn.version + 1, updated_at=func.now())
        ),
    ).rowcount
    return moved > 0


def record_unmoved(session: Session, txn: Any, source: Source, reason: str) -> None:
    """An event row that leaves the status where it is: a contradiction ignored, an
    operator's decision beside a terminal status, an operator's action. Flushes."""
    session.add(
        TransactionEvent(
            txn_id=txn.id,
            from_status=txn.status,
            to_status=txn.status,
            source=source.value,
            reason=reason,
        )
    )
    session.flush()


def keep_exchanges(session: Session, exchanges: list[tuple[str, dict[str, Any]]]) -> None:
    """PSP exchanges kept for `data.meta` where no transition writes them (a timeout, a
    late answer): (transaction id, psp_meta) each, in one statement."""
    if exchanges:
        rows = [{"id": txn_id, "psp_meta": meta} for txn_id, meta in exchanges]
        session.connection().exec_driver_sql(
            _KEEP_EXCHANGES, {"rows": orjson.dumps(rows, default=str).decode()}
        )


@dataclass(frozen=True)
class Attempt:
    """An initiation attempt booked (``start_attempts``): the transaction
    as the PSP call needs it, and how many attempts there have been in all."""

    seen: Seen
    was: str  # the status before: CREATED on a first attempt
    attempts: int
    action: str
    execute_payload: dict[str, Any]
    psp_id: str
    parent_psp_txn_id: str | None


# Rows are found through the primary key alone, never by a plan the statistics chose: a
# LATERAL lookup per id on the id alone (the LIMIT keeps the planner from pushing the status
# check into the lookup, where it would match the open-transactions index), then
# ``id = ANY(ARRAY(...))``. On a table that grew since it was last analyzed (a new
# deployment's first burst: 3,000 rows where the statistics said 150) the planner had
# scanned that index, or the whole table, for every batch.
_START = """
WITH cur AS (
  SELECT t.id, t.status
  FROM (SELECT DISTINCT id FROM unnest(%(ids)s::text[]) AS want(id) ORDER BY id) AS want
  CROSS JOIN LATERAL (
    SELECT id, status, review_reason, review_resolved_at FROM transactions
    WHERE transactions.id = want.id
    LIMIT 1
    FOR UPDATE
  ) AS t
  WHERE t.status IN ('CREATED', 'INITIATED')
    AND NOT (t.review_reason IS NOT NULL AND t.review_resolved_at IS NULL)
),
booked AS (
  UPDATE transactions t
  SET status = CASE WHEN t.status = 'CREATED' THEN %(to_status)s ELSE t.status END,
      version = t.version + CASE WHEN t.status = 'CREATED' THEN 1 ELSE 0 END,
      initiate_attempts = t.initiate_attempts + 1,
      next_inquiry_at = now() + make_interval(secs => %(first_look)s),
      updated_at = now()
  WHERE t.id = ANY(ARRAY(SELECT id FROM cur))
  RETURNING t.*, (SELECT cur.status FROM cur WHERE cur.id = t.id) AS was
),
steps AS (
  INSERT INTO transaction_events (txn_id, from_status, to_status, source, reason)
  SELECT booked.id, step.f, step.t, %(source)s, %(reason)s
  FROM booked, unnest(%(step_from)s::text[], %(step_to)s::text[]) WITH ORDINALITY AS step(f, t, n)
  WHERE booked.was = 'CREATED'
  ORDER BY booked.id, step.n
)
SELECT booked.id, booked.status, booked.version, booked.environment_id, booked.amount,
       booked.currency, booked.review_reason, booked.review_resolved_at, booked.was,
       booked.initiate_attempts, booked.action, booked.execute_payload, booked.psp_id,
       (SELECT psp_txn_id FROM transactions parent WHERE parent.id = booked.parent_txn_id)
         AS parent_psp_txn_id
FROM booked
"""
_START = " ".join(_START.split())


def start_attempts(
    session: Session, txn_ids: list[str], initiating: Decision, first_inquiry_seconds: float
) -> dict[str, Attempt]:
    """Book an initiation attempt for each transaction, in one statement: a CREATED one
    moves to INITIATED (``initiating``, the state machine's decision, with its event rows),
    an INITIATED one (a call cut short) is tried again; either way the attempt is counted
    and the next look booked. Rows are locked in id order, so two sets never wait on each
    other in a circle. The attempts by transaction id; a transaction with nothing to
    initiate (decided already, held for an operator, or unknown) is left out."""
    rows = session.connection().exec_driver_sql(
        _START,
        {
            "ids": list(txn_ids),
            "to_status": initiating.status.value,
            "first_look": float(first_inquiry_seconds),
            "source": Source.WORKER.value,
            "reason": "sending to the PSP",
            "step_from": [step.from_status.value for step in initiating.steps],
            "step_to": [step.to_status.value for step in initiating.steps],
        },
    )
    attempts = {}
    for row in rows:
        attempts[row.id] = Attempt(
            Seen(*row[:8]),
            row.was,
            row.initiate_attempts,
            row.action,
            row.execute_payload,
            row.psp_id,
            row.parent_psp_txn_id,
        )
    return attempts


@dataclass(frozen=True)
class Move:
    """One decided transition of a batch (``move_many``)."""

    seen: Seen
    decision: Decision
    source: Source
    reason: str | None
    psp_txn_id: str | None = None  # written with the transition when set
    # A PSP's answer, written with the transition: the exchange behind it (data.meta) and
    # its navigation when set; its error always (None clears an earlier one).
    answer: Answer | None = None


@dataclass(frozen=True)
class Answer:
    psp_meta: dict[str, Any]
    navigation: dict[str, Any] | None
    error: dict[str, Any] | None


_MOVE_MANY = f"""
WITH v AS (
  SELECT * FROM jsonb_to_recordset(%(moves)s::jsonb) AS v(
    n int, id text, version int, to_status text, psp_txn_id text, source text, reason text,
    steps jsonb, notification_id text, event_type text, answered bool, psp_meta jsonb,
    navigation jsonb, error jsonb)
),
hit AS (
  SELECT row.id FROM v CROSS JOIN LATERAL (
    SELECT id FROM transactions
    WHERE transactions.id = v.id AND transactions.version = v.version FOR UPDATE
  ) AS row
),
moved AS (
  UPDATE transactions t SET status = v.to_status, version = t.version + 1, updated_at = now(),
    psp_txn_id = coalesce(v.psp_txn_id, t.psp_txn_id),
    psp_meta = CASE WHEN v.answered THEN v.psp_meta ELSE t.psp_meta END,
    navigation = coalesce(v.navigation, t.navigation),
    error = CASE WHEN v.answered THEN v.error ELSE t.error END
  FROM v WHERE t.id = ANY(ARRAY(SELECT id FROM hit)) AND v.id = t.id
  RETURNING t.id, t.environment_id
),
steps AS (
  INSERT INTO transaction_events (txn_id, from_status, to_status, source, reason)
  SELECT moved.id, step.f, step.t, v.source, v.reason
  FROM moved JOIN v ON v.id = moved.id,
       ROWS FROM (jsonb_to_recordset(v.steps) AS (f text, t text))
         WITH ORDINALITY AS step(f, t, k)
  ORDER BY v.n, step.k
),
note AS (
  INSERT INTO notifications (id, txn_id, environment_id, event_type, status, next_attempt_at)
  SELECT v.notification_id, moved.id, moved.environment_id, v.event_type, 'PENDING', now()
  FROM moved JOIN v ON v.id = moved.id WHERE v.notification_id IS NOT NULL
  ON CONFLICT ON CONSTRAINT uq_notifications_txn_event DO NOTHING
  RETURNING id, txn_id
),
message AS (
  INSERT INTO outbox (task, args)
  SELECT '{tasks.NOTIFY}', jsonb_build_object('txn_id', txn_id, 'notification_id', id) FROM note
)
SELECT coalesce(array_agg(id), '{{}}') AS ids,
       (SELECT pg_notify('{CHANNEL}', '') FROM note LIMIT 1) AS woken
FROM moved
"""
_MOVE_MANY = " ".join(_MOVE_MANY.split())


def _answer_fields(answer: Answer) -> dict[str, Any]:
    return {
        "answered": True,
        "psp_meta": answer.psp_meta,
        "navigation": answer.navigation,
        "error": answer.error,
    }


def move_many(session: Session, moves: list[Move]) -> set[str]:
    """``move`` for a batch of transitions of distinct transactions, in one statement; the
    ids of those that moved (the others changed meanwhile: the caller decides again)."""
    if not moves:
        return set()
    payload = []
    # In id order, as start_attempts locks: two statements never wait on each other in a circle.
    for n, m in enumerate(sorted(moves, key=lambda m: m.seen.id)):
        terminal = Command.NOTIFY_MERCHANT in m.decision.commands
        payload.append(
            {
                "n": n,
                "id": m.seen.id,
                "version": m.seen.version,
                "to_status": m.decision.status.value,
                "psp_txn_id": m.psp_txn_id,
                "source": m.source.value,
                "reason": m.reason,
                "steps": [
                    {"f": s.from_status.value, "t": s.to_status.value} for s in m.decision.steps
                ],
                "notification_id": random_id("ntf") if terminal else None,
                "event_type": f"transaction.{m.decision.status.value.lower()}",
                **(_answer_fields(m.answer) if m.answer is not None else {}),
            }
        )
    moves_json = orjson.dumps(payload, default=str).decode()
    row = session.connection().exec_driver_sql(_MOVE_MANY, {"moves": moves_json}).one()
    return set(row.ids)
