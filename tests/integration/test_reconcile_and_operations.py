"""Reconciliation, re-drive and the operator commands, against the running stack."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import func, select, update

from storage.db import session_scope
from storage.models import InboxMessage, OutboxMessage, Transaction
from tests.support.cli import cli
from tests.support.flows import (
    V2,
    customer_decides,
    events,
    paymaxis_psp,
    sandbox_payments,
    transaction_body,
    wait_status,
)
from tests.support.stack import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def paymaxis(api, stack, tenant):
    _, headers = tenant
    flow_target, psp, credential = paymaxis_psp(api, stack.sandbox_url, headers)
    return headers, flow_target, psp, credential


def post(api, headers, flow_target, psp, **extra):
    answer = api.post(
        f"{V2}/transactions", headers=headers, json=transaction_body(psp, flow_target, **extra)
    )
    assert answer.status_code in (200, 202), answer.text
    return answer.json()["data"]["txnId"]


def test_psp_outage_then_recovery_resumes_the_initiation(api, stack, paymaxis):
    headers, flow_target, psp, _ = paymaxis
    httpx.put(f"{stack.sandbox_url}/_control", json={"fail": "5xx"})
    txn_id = post(api, headers, flow_target, psp)
    assert wait_status(api, headers, txn_id, {"INITIATED"})["status"] == "INITIATED"
    httpx.put(f"{stack.sandbox_url}/_control", json={"fail": "none"})
    # Reconciliation initiates again: it looks for the payment first, then creates it once.
    wait_status(api, headers, txn_id, {"PG_ACCEPTED"}, timeout=20)
    assert len(sandbox_payments(stack.sandbox_url, txn_id)) == 1


def _initiate_attempts(txn_id: str) -> int:
    with session_scope() as session:
        return session.get(Transaction, txn_id).initiate_attempts


def test_psp_that_never_heard_of_it_ends_it_failed_once_tries_run_out(api, stack, paymaxis):
    headers, flow_target, psp, _ = paymaxis
    httpx.put(f"{stack.sandbox_url}/_control", json={"fail": "5xx"})
    txn_id = post(api, headers, flow_target, psp)
    wait_until(lambda: _initiate_attempts(txn_id) >= 4, timeout=30, what="initiation tries")
    httpx.put(f"{stack.sandbox_url}/_control", json={"fail": "none"})
    # No tries left: an inquiry learns the PSP never saw it, so nothing was charged.
    final = wait_status(api, headers, txn_id, {"FAILED", "PG_ACCEPTED"}, timeout=20)
    assert final["status"] == "FAILED"
    assert events(api, headers, txn_id)[-1] == ("INITIATED", "FAILED")
    assert sandbox_payments(stack.sandbox_url, txn_id) == []


def test_unpaid_deposit_past_its_expiry_fails_as_expired(api, stack, paymaxis):
    headers, flow_target, psp, credential = paymaxis
    txn_id = post(api, headers, flow_target, psp)
    wait_status(api, headers, txn_id, {"PG_ACCEPTED"})
    with session_scope() as session:
        session.execute(
            update(Transaction)
            .where(Transaction.id == txn_id)
            .values(created_at=datetime.now(UTC) - timedelta(hours=2), next_inquiry_at=func.now())
        )
    final = wait_status(api, headers, txn_id, {"FAILED"}, timeout=20)
    assert final["error"]["code"] == "EXPIRED"
    steps = api.get(f"{V2}/transactions/{txn_id}/events", headers=headers).json()["data"]["items"]
    assert steps[-1]["source"] == "expiry" and steps[-1]["reason"] == "expired"


def test_unsent_outbox_rows_are_sent_again(api, stack, paymaxis):
    headers, flow_target, psp, credential = paymaxis
    txn_id = post(api, headers, flow_target, psp)
    wait_status(api, headers, txn_id, {"PG_ACCEPTED"})
    # A crash between commit and publish leaves exactly this: an unsent row.
    with session_scope() as session:
        session.add(OutboxMessage(task="reconcile.sweep", args={"txn_id": txn_id}))
    wait_until(lambda: _unsent(txn_id) == 0, timeout=15, what="outbox re-drive")


def _unsent(txn_id: str) -> int:
    with session_scope() as session:
        return session.scalar(
            # A row is deleted once its task left.
            select(func.count()).where(OutboxMessage.args["txn_id"].astext == txn_id)
        )


def test_txn_show_reconcile_and_replay_commands(api, stack, paymaxis):
    headers, flow_target, psp, credential = paymaxis
    txn_id = post(api, headers, flow_target, psp)
    wait_status(api, headers, txn_id, {"PG_ACCEPTED"})
    shown = cli("txn", "show", txn_id)
    assert shown.returncode == 0, shown.stderr
    assert "INITIATED → PG_ACCEPTED" in shown.stdout
    assert credential["apiKey"] not in shown.stdout
    assert credential["webhookSigningKey"] not in shown.stdout
    assert cli("txn", "show", "txn_missing").returncode == 4  # commands/exits.py: not found

    customer_decides(stack.sandbox_url, txn_id)
    reconciled = cli("reconcile", "--txn", txn_id)
    assert reconciled.returncode == 0, reconciled.stderr
    wait_status(api, headers, txn_id, {"SUCCESS"})

    with session_scope() as session:
        parked_id = session.scalar(
            select(InboxMessage.id).where(InboxMessage.txn_id == txn_id).limit(1)
        )
        session.execute(
            update(InboxMessage)
            .where(InboxMessage.id == parked_id)
            .values(parked_at=func.now(), processed_at=None, result="parked after 9 attempts")
        )
    listed = api.get(f"{V2}/transactions/{txn_id}/webhooks", headers=headers).json()["data"]
    assert any(item["parkedAt"] for item in listed["items"])
    replayed = cli("webhooks", "replay", str(parked_id))
    assert replayed.returncode == 0, replayed.stderr
    with session_scope() as session:
        message = session.get(InboxMessage, parked_id)
        assert message.parked_at is None and message.processed_at is not None
    # Replaying an applied notification changes nothing: still one SUCCESS step.
    assert events(api, headers, txn_id).count(("PG_ACCEPTED", "SUCCESS")) == 1
