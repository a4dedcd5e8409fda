"""A batch of deposits started at the PSP as a set (workers.initiation.initiate_many): every
attempt booked in one statement, every answer written in one, with the same outcome, events
and merchant notifications as one transaction at a time, and never a second payment.

The deposits are copies of one the API took, stored in CREATED without a message, so the
running worker leaves them alone and the batch is called here, in this process."""

from __future__ import annotations

import secrets

import httpx
import pytest
from sqlalchemy import text

from storage.db import session_scope
from tests.support.flows import events, paymaxis_psp, sandbox_payments, wait_status
from tests.support.merchant import deposit, notifications_for, notified_tenant, transaction
from tests.support.stack import wait_until
from workers.initiation import initiate_many
from workers.locks import transaction_lock

pytestmark = pytest.mark.integration

_COPY = text(
    """
    INSERT INTO transactions
    SELECT (jsonb_populate_record(NULL::transactions, to_jsonb(t) || jsonb_build_object(
        'id', CAST(:new_id AS text), 'status', 'CREATED', 'version', 0,
        'psp_txn_id', NULL, 'navigation', NULL, 'psp_meta', NULL, 'error', NULL,
        'initiate_attempts', 0, 'inquiry_count', 0, 'next_inquiry_at', NULL,
        'order_id', CAST(:new_id AS text)))).*
    FROM transactions t WHERE t.id = :template
    """
)
_CREATED_EVENT = text(
    "INSERT INTO transaction_events (txn_id, from_status, to_status, source, reason) "
    "SELECT :new_id, from_status, to_status, source, reason FROM transaction_events "
    "WHERE txn_id = :template AND to_status = 'CREATED'"
)


@pytest.fixture
def paymaxis(api, stack, make_tenant):
    _, headers = notified_tenant(stack, make_tenant)
    flow_target, psp, _ = paymaxis_psp(api, stack.sandbox_url, headers)
    template = deposit(api, headers, flow_target, psp)
    wait_status(api, headers, template, {"PG_ACCEPTED"})
    return headers, template


def created_copies(template: str, count: int) -> list[str]:
    """Deposits in CREATED like ``template``, with no message published for them."""
    ids = [f"{template[:4]}{secrets.token_hex(10)}" for _ in range(count)]
    with session_scope() as session:
        for new_id in ids:
            session.execute(_COPY, {"new_id": new_id, "template": template})
            session.execute(_CREATED_EVENT, {"new_id": new_id, "template": template})
    return ids


def items(txn_ids: list[str]) -> list[dict]:
    return [{"txn_id": txn_id} for txn_id in txn_ids]


def test_a_batch_starts_each_payment_once_with_the_events_of_one_at_a_time(api, stack, paymaxis):
    headers, template = paymaxis
    ids = created_copies(template, 8)
    # The template is already past CREATED, and one id comes twice: neither is paid again.
    again = initiate_many(items([*ids, template, ids[0]]))

    assert again == []
    for txn_id in ids:
        data = transaction(api, headers, txn_id)
        assert data["status"] == "PG_ACCEPTED", data
        assert data["navigation"]["value"].startswith("http"), data  # the PSP page
        assert events(api, headers, txn_id) == [
            ("NEW", "CREATED"),
            ("CREATED", "INITIATED"),
            ("INITIATED", "PG_ACCEPTED"),
        ]
        (payment,) = sandbox_payments(stack.sandbox_url, txn_id)
        assert payment["state"]
    assert len(sandbox_payments(stack.sandbox_url, template)) == 1
    with session_scope() as session:
        rows = session.execute(
            text(
                "SELECT initiate_attempts, psp_txn_id, psp_meta FROM transactions "
                "WHERE id = ANY(:ids)"
            ),
            {"ids": ids},
        ).all()
    assert len(rows) == len(ids)
    assert all(attempts == 1 and psp_txn and meta for attempts, psp_txn, meta in rows), rows


def test_a_declined_batch_ends_rejected_and_tells_the_merchant(api, stack, paymaxis):
    headers, template = paymaxis
    ids = created_copies(template, 3)
    httpx.put(f"{stack.sandbox_url}/_control", json={"fail": "decline"})

    assert initiate_many(items(ids)) == []

    for txn_id in ids:
        data = transaction(api, headers, txn_id)
        assert data["status"] == "REJECTED", data
        assert events(api, headers, txn_id) == [
            ("NEW", "CREATED"),
            ("CREATED", "INITIATED"),
            ("INITIATED", "PG_REJECTED"),
            ("PG_REJECTED", "REJECTED"),
        ]
        wait_until(
            lambda txn_id=txn_id: notifications_for(stack, txn_id),
            timeout=20,
            what=f"the merchant told of {txn_id}",
        )


def test_a_payment_locked_elsewhere_is_handed_back_untouched(api, stack, paymaxis):
    headers, template = paymaxis
    busy, free = created_copies(template, 2)

    with transaction_lock(busy):
        again = initiate_many(items([busy, free]))

    assert again == [{"txn_id": busy}]
    assert transaction(api, headers, busy)["status"] == "CREATED"
    assert sandbox_payments(stack.sandbox_url, busy) == []
    assert transaction(api, headers, free)["status"] == "PG_ACCEPTED"
