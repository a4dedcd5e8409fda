"""Customers' personal data: redacted a set time after their transaction ended, or at once
when the merchant asks for a customer to be erased.

A customer's names, e-mail, phone, address (and whatever else the merchant sends about
them: bank details, documents, custom attributes) arrive in ``executePayload`` and spread:
the transaction keeps the payload and the PSP exchanges that carried it (``psp_meta``), the
inbox keeps the PSP's webhooks about it, the idempotency key keeps the answer that showed
those exchanges. Notifications and their attempts keep none (a notification's body is
built when it is sent), nor do events, the outbox or the audit trail.

Redacting a transaction keeps what the money needs: of the payload the order's id, money,
CRM amounts and timestamp, the customer's id and the merchant's return pages; of each PSP
exchange its method, address without query, status, time and error; amounts, currencies,
ids, statuses, events and reviews stay. Its webhooks' bodies are emptied, and the answer
its idempotency key stored is dropped (a retry of that request rebuilds it from the row).

Redaction is by allowlist: what is not named above goes, whatever the merchant called it.
Each batch is one short transaction locking only rows nobody else holds, as retention
does; ``personal_data_redacted_at`` marks a row done.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
from sqlalchemy import Connection, Engine, select
from sqlalchemy.orm import Session

from connectors.schemas import body_of
from connxt.settings import Settings
from storage.models import Brand

TERMINAL = ("SUCCESS", "FAILED", "REJECTED")
_ORDER_KEPT = ("id", "money", "crmData", "timestamp")


def redacted_payload(payload: Any) -> dict[str, Any]:
    """What is kept of an executePayload: no field that says anything about the person."""
    body = body_of(payload if isinstance(payload, dict) else None)
    kept: dict[str, Any] = {}
    order = body.get("order")
    if isinstance(order, dict):
        kept["order"] = {k: order[k] for k in _ORDER_KEPT if k in order}
    customer = body.get("customer")
    if isinstance(customer, dict) and "id" in customer:
        kept["customer"] = {"id": customer["id"]}
    urls = body.get("urls")
    if isinstance(urls, dict):
        # The merchant's pages: where a customer coming back from the PSP is sent.
        kept["urls"] = {k: v for k, v in urls.items() if isinstance(v, str)}
    return {"body": kept}


def _without_query(url: Any) -> Any:
    if not isinstance(url, str):
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    return urlunsplit(parts._replace(query="", fragment=""))


def redacted_meta(meta: Any) -> Any:
    """The PSP exchanges without what was sent and answered."""
    if not isinstance(meta, dict):
        return meta
    http = meta.get("http")
    exchanges = http if isinstance(http, list) else []
    return {
        "pspState": meta.get("pspState"),
        "http": [
            {
                "method": x.get("method"),
                "url": _without_query(x.get("url")),
                "request": None,
                "statusCode": x.get("statusCode"),
                "response": None,
                "elapsedMs": x.get("elapsedMs"),
                "error": x.get("error"),
            }
            for x in exchanges
            if isinstance(x, dict)
        ],
    }


# Ended and not yet redacted, for ``days`` (ix_transactions_personal_data_due), or named by
# an erasure request (ix_transactions_erasure_pending).
_DUE = f"""
SELECT id FROM transactions
WHERE personal_data_redacted_at IS NULL AND status IN {TERMINAL}
  AND updated_at < now() - make_interval(days => %(days)s)
ORDER BY updated_at LIMIT %(batch)s FOR UPDATE SKIP LOCKED
"""
_ERASURE_DUE = f"""
SELECT id FROM transactions
WHERE erasure_requested_at IS NOT NULL AND personal_data_redacted_at IS NULL
  AND status IN {TERMINAL}
ORDER BY erasure_requested_at LIMIT %(batch)s FOR UPDATE SKIP LOCKED
"""


def redact_rows(conn: Connection, txn_ids: list[str], with_idempotency: bool = True) -> int:
    """Redact these transactions (locked by the caller, or locked here) and what hangs off
    them; the transactions redacted. ``with_idempotency``: also the answers their keys
    stored (retention leaves those to their own, shorter, retention)."""
    if not txn_ids:
        return 0
    rows = conn.exec_driver_sql(
        "SELECT id, environment_id, execute_payload, psp_meta FROM transactions "
        "WHERE id = ANY(%(ids)s) AND personal_data_redacted_at IS NULL FOR UPDATE",
        {"ids": txn_ids},
    ).all()
    if not rows:
        return 0
    ids = [row[0] for row in rows]
    conn.exec_driver_sql(
        """UPDATE transactions t SET execute_payload = v.payload, psp_meta = v.meta,
             personal_data_redacted_at = now()
           FROM unnest(%(ids)s::text[], %(payloads)s::jsonb[], %(metas)s::jsonb[])
             AS v(id, payload, meta)
           WHERE t.id = v.id""",
        {
            "ids": ids,
            "payloads": [orjson.dumps(redacted_payload(row[2])).decode() for row in rows],
            "metas": [
                None if row[3] is None else orjson.dumps(redacted_meta(row[3])).decode()
                for row in rows
            ],
        },
    )
    # The PSP's webhooks about them (ix_inbox_txn_id): the body is what the PSP said,
    # customer included; the row (its identity, verification, result) stays.
    conn.exec_driver_sql(
        "UPDATE inbox SET body = ''::bytea WHERE txn_id = ANY(%(ids)s) AND length(body) > 0",
        {"ids": ids},
    )
    if with_idempotency:
        # A decided Step 3 answer shows the PSP exchanges; a retry of its key rebuilds the
        # answer from the redacted row instead. Found through the key's environment (its
        # primary key's first column): the keys are not indexed by what they created.
        conn.exec_driver_sql(
            "UPDATE idempotency_keys SET response_code = NULL, response_body = NULL "
            "WHERE environment_id = ANY(%(environments)s) AND resource_id = ANY(%(ids)s) "
            "AND response_body IS NOT NULL",
            {"environments": sorted({row[1] for row in rows}), "ids": ids},
        )
    return len(ids)


def redact_due(engine: Engine, settings: Settings, deadline: float) -> int:
    """The retention sweep's part (storage.retention): every transaction ended
    ``pii_retention_days`` ago, and every ended one an erasure named, batch by batch until
    none is left or ``deadline`` (monotonic) passes; the transactions redacted."""
    batch = settings.retention_batch_rows
    # Keys older than their own retention are deleted anyway: a transaction that ended
    # longer ago than that has none left to redact.
    keys_outlive = settings.idempotency_retention_days > settings.pii_retention_days
    redacted = 0
    for query, with_keys in ((_ERASURE_DUE, True), (_DUE, keys_outlive)):
        while time.monotonic() < deadline:
            with engine.begin() as conn:
                ids = [
                    row[0]
                    for row in conn.exec_driver_sql(
                        query, {"days": settings.pii_retention_days, "batch": batch}
                    )
                ]
                count = redact_rows(conn, ids, with_keys)
            redacted += count
            if len(ids) < batch:
                break
    return redacted


@dataclass(frozen=True)
class Erasure:
    redacted: int  # ended transactions, redacted now
    pending: int  # open ones, redacted as soon as each ends


def erase_customer(session: Session, brand_name: str, customer_id: str) -> Erasure | None:
    """``erase`` for the brand named ``brand_name``; None when there is no such brand."""
    brand_id = session.scalar(select(Brand.id).where(Brand.name == brand_name))
    if brand_id is None:
        return None
    return erase(session.connection(), brand_id, customer_id)


def erase(conn: Connection, brand_id: str, customer_id: str) -> Erasure:
    """An erasure request: every transaction of the brand's customer (and refunds of
    them) redacted now if it has ended, else marked to be redacted when it ends (its PSP
    may still need what the customer gave: a payment in flight is finished first)."""
    ids = _customer_transactions(conn, brand_id, customer_id)
    rows = conn.exec_driver_sql(
        "SELECT id, status FROM transactions WHERE id = ANY(%(ids)s) "
        "AND personal_data_redacted_at IS NULL ORDER BY id FOR UPDATE",
        {"ids": ids},
    ).all()
    ended = [row[0] for row in rows if row[1] in TERMINAL]
    still_open = [row[0] for row in rows if row[1] not in TERMINAL]
    conn.exec_driver_sql(
        "UPDATE transactions SET erasure_requested_at = now() WHERE id = ANY(%(ids)s) "
        "AND erasure_requested_at IS NULL",
        {"ids": still_open},
    )
    return Erasure(redact_rows(conn, ended), len(still_open))


def _customer_transactions(conn: Connection, brand_id: str, customer_id: str) -> list[str]:
    """The customer's transactions (ix_transactions_customer) and refunds of them
    (ix_transactions_parent_txn_id), whatever customer a refund's own payload named."""
    own = [
        row[0]
        for row in conn.exec_driver_sql(
            "SELECT id FROM transactions WHERE brand_id = %(brand)s AND user_id = %(customer)s",
            {"brand": brand_id, "customer": customer_id},
        )
    ]
    children = [
        row[0]
        for row in conn.exec_driver_sql(
            "SELECT id FROM transactions WHERE parent_txn_id = ANY(%(ids)s)", {"ids": own}
        )
    ]
    return sorted(set(own) | set(children))


def customer_reference(customer_id: str) -> str:
    """How the audit trail names an erased customer: a digest, not the id (which may be an
    e-mail address), so the trail itself keeps nothing personal; whoever holds the id can
    check that it was erased."""
    return "customer sha256:" + hashlib.sha256(customer_id.encode()).hexdigest()[:16]
