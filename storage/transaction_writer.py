"""New transactions, many per statement: the group commit of Step 3.

One statement stores a whole batch: each transaction in CREATED with its event rows, its
`transactions.initiate` outbox row and, when the request carried one, its Idempotency-Key
row. The key's insert decides between two requests with one key: a transaction whose key
was already taken is not stored, and its caller answers from the earlier request. The same
statement wakes the outbox relay (NOTIFY is delivered at commit, never before).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy.orm import Session

from connxt import tasks
from state_machine import Command, Event, Source, Status, apply
from storage.aio import IngressConnection
from storage.outbox import CHANNEL as OUTBOX_CHANNEL

_CREATED = apply(Status.NEW, Event.CREATE)
# What the state machine asks for after a creation is what the statement writes with it:
# the initiation's outbox message. Anything else asked for would have no writer here.
if _CREATED.commands != (Command.INITIATE_AT_PSP,):
    raise RuntimeError(f"a new transaction's commands changed: {_CREATED.commands}")


@dataclass(frozen=True, slots=True)
class IdempotencyRow:
    key: str
    request_sha256: str
    # Known before the commit only for a 202: it is stored with the key at once.
    response_code: int | None = None
    response_body: str | None = None  # JSON text


# Not frozen: a frozen dataclass sets each of its fields through object.__setattr__, five
# times the cost of a plain one, once per request on the hottest path. Built once by the
# ingress, then only read.
@dataclass(slots=True)
class NewTransaction:
    id: str
    brand_id: str
    environment_id: str
    psp_id: str
    flow_action_id: str
    flow_target_id: str
    action: str
    transaction_type: str
    amount: Decimal
    currency: str
    order_id: str | None
    user_id: str | None
    execute_payload: str  # JSON text, numbers exactly as the merchant wrote them
    queue: str  # the lane of its PSP's calls (connxt.tasks.psp_queue)
    parent_txn_id: str | None = None
    idempotency: IdempotencyRow | None = None
    # The request's trace context (connxt.tracing), carried by its outbox row; None when
    # traces are off.
    traceparent: str | None = None


class Stored(enum.Enum):
    CREATED = "created"
    KEY_TAKEN = "key_taken"  # another request with this Idempotency-Key came first


_INSERT = """
WITH new AS (
  SELECT * FROM jsonb_to_recordset(%s::jsonb) AS n(
    id text, brand_id text, environment_id text, psp_id text, flow_action_id text,
    flow_target_id text, action text, transaction_type text, amount numeric, currency text,
    order_id text, user_id text, execute_payload jsonb, parent_txn_id text, key text,
    request_sha256 text, response_code int, response_body jsonb, queue text, traceparent text)
),
keys AS (
  INSERT INTO idempotency_keys
    (environment_id, key, request_sha256, response_code, response_body, resource_id)
  SELECT environment_id, key, request_sha256, response_code, response_body, id
  FROM new WHERE key IS NOT NULL
  ON CONFLICT DO NOTHING
  RETURNING resource_id
),
stored AS (
  INSERT INTO transactions
    (id, brand_id, environment_id, psp_id, flow_action_id, flow_target_id, action,
     transaction_type, amount, currency, status, version, parent_txn_id, order_id, user_id,
     execute_payload, next_inquiry_at)
  SELECT id, brand_id, environment_id, psp_id, flow_action_id, flow_target_id, action,
         transaction_type, amount, currency, {status}, 0, parent_txn_id, order_id, user_id,
         execute_payload, now() + make_interval(secs => {first_look})
  FROM new WHERE key IS NULL OR id IN (SELECT resource_id FROM keys)
  RETURNING id
),
steps AS (
  INSERT INTO transaction_events (txn_id, from_status, to_status, source, reason)
  SELECT stored.id, step.from_status, step.to_status, {source}, {reason}
  FROM stored CROSS JOIN unnest({from_status}::text[], {to_status}::text[])
    WITH ORDINALITY AS step(from_status, to_status, n)
  ORDER BY stored.id, step.n
),
messages AS (
  INSERT INTO outbox (task, args, queue)
  SELECT {task}, CASE WHEN new.traceparent IS NULL
    THEN jsonb_build_object('txn_id', stored.id)
    ELSE jsonb_build_object('txn_id', stored.id, 'traceparent', new.traceparent) END,
    new.queue
  FROM stored JOIN new ON new.id = stored.id
)
SELECT (SELECT coalesce(array_agg(id), '{{}}') FROM stored) AS ids,
       pg_notify({channel}, '') AS woken
"""


def _literal(value: str) -> str:
    # Only our own constants (statuses, task names, a fixed reason) become literals: the
    # statement then carries one parameter, the batch, which is cheaper to send.
    if not re.fullmatch(r"[A-Za-z0-9_. ]*", value):
        raise ValueError(f"not a plain constant: {value!r}")
    return f"'{value}'"


def _array(values: list[str]) -> str:
    return "ARRAY[" + ", ".join(_literal(v) for v in values) + "]"


@lru_cache(maxsize=8)
def _statement(first_inquiry_seconds: float) -> str:
    sql = _INSERT.format(
        status=_literal(_CREATED.status.value),
        # If the initiate message is lost, reconciliation starts the transaction from here.
        first_look=float(first_inquiry_seconds),
        source=_literal(Source.API.value),
        reason=_literal("validated and stored"),
        from_status=_array([step.from_status.value for step in _CREATED.steps]),
        to_status=_array([step.to_status.value for step in _CREATED.steps]),
        task=_literal(tasks.INITIATE),
        channel=_literal(OUTBOX_CHANNEL),
    )
    # Compact: psycopg caches the parsing of statements only up to 4 KB of text.
    return " ".join(sql.split())


def _exact(value: Any) -> Any:
    if isinstance(value, Decimal):
        return orjson.Fragment(str(value).encode())  # a JSON number, exactly this amount
    raise TypeError(type(value).__name__)


def _rows(items: Sequence[NewTransaction]) -> str:
    """The batch as one JSON document: one parameter, turned into rows by PostgreSQL in C
    (an array parameter per column costs far more to send from Python)."""
    rows = []
    for t in items:
        key = t.idempotency
        row = {
            "id": t.id,
            "brand_id": t.brand_id,
            "environment_id": t.environment_id,
            "psp_id": t.psp_id,
            "flow_action_id": t.flow_action_id,
            "flow_target_id": t.flow_target_id,
            "action": t.action,
            "transaction_type": t.transaction_type,
            "amount": t.amount,
            "currency": t.currency,
            "order_id": t.order_id,
            "user_id": t.user_id,
            "execute_payload": orjson.Fragment(t.execute_payload),
            "parent_txn_id": t.parent_txn_id,
            "key": key.key if key else None,
            "request_sha256": key.request_sha256 if key else None,
            "response_code": key.response_code if key else None,
            "queue": t.queue,
            "response_body": (
                orjson.Fragment(key.response_body) if key and key.response_body else None
            ),
        }
        if t.traceparent is not None:
            row["traceparent"] = t.traceparent  # absent is NULL: nothing to send when off
        rows.append(row)
    return orjson.dumps(rows, default=_exact).decode()


class TransactionWriter:
    """The group-commit writer (storage.group_commit) for Step 3."""

    name = "transactions"

    def __init__(self, first_inquiry_seconds: float):
        self._first_inquiry = first_inquiry_seconds

    async def write(self, conn: IngressConnection, items: Sequence[NewTransaction]) -> list[Stored]:
        cursor = await conn.execute(_statement(self._first_inquiry), (_rows(items),))
        row = await cursor.fetchone()
        assert row is not None  # its last SELECT has no FROM: always exactly one row
        return _outcomes(items, set(row["ids"]))

    async def settle(
        self, conn: IngressConnection, items: Sequence[NewTransaction]
    ) -> list[Stored] | None:
        cursor = await conn.execute(
            "SELECT id FROM transactions WHERE id = ANY(%s)", [[t.id for t in items]]
        )
        found = {row["id"] for row in await cursor.fetchall()}
        # One statement: either every row it stored is there, or none is.
        return _outcomes(items, found) if found else None


def insert_one(session: Session, txn: NewTransaction, first_inquiry_seconds: float) -> Stored:
    """The same statement for one transaction, inside the caller's database transaction
    (a refund, written under its parent's row lock)."""
    statement = _statement(first_inquiry_seconds)
    row = session.connection().exec_driver_sql(statement, (_rows([txn]),)).one()
    return _outcomes([txn], set(row.ids))[0]


def _outcomes(items: Sequence[NewTransaction], stored: set[str]) -> list[Stored]:
    return [Stored.CREATED if t.id in stored else Stored.KEY_TAKEN for t in items]
