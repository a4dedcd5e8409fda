"""PSP notifications, many per statement: the group commit of the webhook endpoint.

One statement checks that each notification names a transaction of the PSP account it
came to, stores the new ones in the inbox (insert-or-ignore on the PSP's event identity,
an unverified one's set apart: ``slot_key``), adds a `callbacks.webhook` outbox row for
each newly stored one only, and wakes the outbox relay at commit. Running it again is
harmless (what is stored stays stored), so a batch whose connection was lost is simply
written again.
"""

from __future__ import annotations

import base64
import enum
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from connxt import tasks
from storage.aio import IngressConnection
from storage.outbox import CHANNEL as OUTBOX_CHANNEL

EVENT_KEY_LENGTH = 300  # the column's width
# An unverified notification (its account has no signing key: development, or an account
# made before the key was required) is kept apart from verified ones: anyone can send one,
# so it must never take the (PSP, event) slot of the genuine signed webhook that follows.
UNVERIFIED = "unverified:"


def slot_key(event_key: str, verified: bool) -> str:
    """The inbox's de-duplication key: the PSP's identity of the notification, set apart
    when it is not verified. Copies of one unverified body are still one row."""
    return (event_key if verified else UNVERIFIED + event_key)[:EVENT_KEY_LENGTH]


# Not frozen, as storage.transaction_writer.NewTransaction: built once per webhook, then read.
@dataclass(slots=True)
class NewWebhook:
    psp_id: str
    event_key: str
    txn_id: str
    headers: str  # JSON text of the headers worth keeping
    body: bytes
    verified: bool
    # The request's trace context (connxt.tracing), carried by its outbox row.
    traceparent: str | None = None


class Outcome(enum.Enum):
    STORED = "stored"
    DUPLICATE = "duplicate"  # stored before: acknowledged, not processed again
    IGNORED = "ignored"  # not a transaction of this PSP account: acknowledged, untouched


@dataclass(frozen=True, slots=True)
class Received:
    outcome: Outcome
    inbox_id: int | None = None


_INSERT = f"""
WITH new AS (
  SELECT n, psp_id, event_key, txn_id, headers, decode(body, 'base64') AS body, verified,
         traceparent
  FROM jsonb_to_recordset(%s::jsonb) AS n(
    n int, psp_id text, event_key text, txn_id text, headers jsonb, body text, verified bool,
    traceparent text)
),
owned AS (
  SELECT new.* FROM new
  JOIN transactions t ON t.id = new.txn_id AND t.psp_id = new.psp_id
),
stored AS (
  INSERT INTO inbox (psp_id, event_key, txn_id, headers, body, verified)
  SELECT psp_id, event_key, txn_id, headers, body, verified FROM owned
  ON CONFLICT ON CONSTRAINT uq_inbox_psp_event DO NOTHING
  RETURNING id, psp_id, event_key, txn_id
),
messages AS (
  INSERT INTO outbox (task, args)
  SELECT '{tasks.WEBHOOK}', CASE WHEN owned.traceparent IS NULL
    THEN jsonb_build_object('inbox_id', stored.id, 'txn_id', stored.txn_id)
    ELSE jsonb_build_object('inbox_id', stored.id, 'txn_id', stored.txn_id,
                            'traceparent', owned.traceparent) END
  FROM stored JOIN owned ON owned.psp_id = stored.psp_id AND owned.event_key = stored.event_key
)
SELECT new.n, owned.n IS NOT NULL AS owned, stored.id AS inbox_id,
       (SELECT pg_notify('{OUTBOX_CHANNEL}', '')) AS woken
FROM new
LEFT JOIN owned ON owned.n = new.n
LEFT JOIN stored ON stored.psp_id = new.psp_id AND stored.event_key = new.event_key
"""
# Compact: psycopg caches the parsing of statements only up to 4 KB of text.
_INSERT = " ".join(_INSERT.split())
assert tasks.WEBHOOK.replace(".", "").isalnum()  # a plain constant, written into the SQL


class InboxWriter:
    """The group-commit writer (storage.group_commit) for PSP notifications."""

    name = "webhooks"

    async def write(self, conn: IngressConnection, items: Sequence[NewWebhook]) -> list[Received]:
        # A notification repeated within one batch is sent once; its copies are duplicates.
        first: dict[tuple[str, str], int] = {}
        distinct: list[NewWebhook] = []
        for item in items:
            key = (item.psp_id, slot_key(item.event_key, item.verified))
            if key not in first:
                first[key] = len(distinct)
                distinct.append(item)
        # The batch as one JSON document, turned into rows by PostgreSQL; the raw body
        # travels as base64, so its bytes are stored exactly as they were signed.
        rows = [
            {
                "n": n,
                "psp_id": w.psp_id,
                "event_key": slot_key(w.event_key, w.verified),
                "txn_id": w.txn_id,
                "headers": orjson.Fragment(w.headers),
                "body": base64.b64encode(w.body).decode(),
                "verified": w.verified,
                # Absent is NULL: nothing more to send when traces are off.
                **({"traceparent": w.traceparent} if w.traceparent is not None else {}),
            }
            for n, w in enumerate(distinct)
        ]
        cursor = await conn.execute(_INSERT, (orjson.dumps(rows).decode(),))
        answered = {row["n"]: row for row in await cursor.fetchall()}
        results: list[Received] = []
        told: set[int] = set()
        for item in items:
            n = first[(item.psp_id, slot_key(item.event_key, item.verified))]
            row = answered[n]
            if not row["owned"]:
                results.append(Received(Outcome.IGNORED))
            elif row["inbox_id"] is not None and n not in told:
                told.add(n)
                results.append(Received(Outcome.STORED, row["inbox_id"]))
            else:
                results.append(Received(Outcome.DUPLICATE))
        return results

    async def settle(self, conn: IngressConnection, items: Sequence[NewWebhook]) -> None:
        return None  # writing again stores nothing twice
