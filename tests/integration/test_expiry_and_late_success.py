"""Expired deposits cannot be paid where the PSP lets us close them, and a success that
comes anyway is recorded, told and held for an operator (hardening #9, item 3)."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import func, update

from storage.db import session_scope
from storage.models import Transaction
from tests.support.cli import cli
from tests.support.flows import V2, create_psp, paymaxis_psp, target, wait_status
from tests.support.merchant import (
    deposit,
    history,
    notifications_for,
    notified_tenant,
    pay,
    payment_of,
    reasons,
    review_list,
    transaction,
)
from tests.support.stack import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def merchant(stack, make_tenant):
    return notified_tenant(stack, make_tenant)


def age(txn_id: str) -> None:
    """Make the deposit older than the expiry window and due for its next look."""
    with session_scope() as session:
        session.execute(
            update(Transaction)
            .where(Transaction.id == txn_id)
            .values(created_at=datetime.now(UTC) - timedelta(hours=2), next_inquiry_at=func.now())
        )


def test_expiry_cancels_the_paymaxis_payment_so_its_page_cannot_be_paid(api, stack, merchant):
    _, headers = merchant
    flow_target, psp, _ = paymaxis_psp(api, stack.sandbox_url, headers)
    txn_id = deposit(api, headers, flow_target, psp)
    page = transaction(api, headers, txn_id)["navigation"]["value"]
    age(txn_id)
    expired = wait_status(api, headers, txn_id, {"FAILED", "SUCCESS"}, timeout=20)
    assert expired["status"] == "FAILED" and expired["error"]["code"] == "EXPIRED"

    assert payment_of(stack, txn_id)["state"] == "CANCELLED", "the PSP's page is still payable"
    assert "Approve" not in httpx.get(page).text
    httpx.post(page, data={"decision": "approve"})
    assert pay(stack, txn_id)["changed"] is False
    assert payment_of(stack, txn_id)["state"] == "CANCELLED"
    time.sleep(1.5)  # the PSP's CANCELLED notification lands: a duplicate of our outcome
    assert transaction(api, headers, txn_id)["status"] == "FAILED"
    assert "late_success" not in reasons(api, headers, txn_id)


def test_sticpay_page_paid_after_expiry_is_a_late_success(api, stack, merchant):
    _, headers = merchant
    credential = {"merchantEmail": f"m{secrets.token_hex(4)}@shop.example", "apiKey": "stk-l"}
    httpx.put(f"{stack.sandbox_url}/_control/accounts", json=credential)
    flow_target = target(api, headers, "Sticpay")
    psp = create_psp(api, headers, flow_target, credential, name="Sticpay")
    txn_id = deposit(api, headers, flow_target, psp)
    page = transaction(api, headers, txn_id)["navigation"]["value"]
    assert httpx.get(page).status_code == 200  # the customer opens the page, then leaves
    age(txn_id)
    assert wait_status(api, headers, txn_id, {"FAILED"}, timeout=20)["error"]["code"] == "EXPIRED"
    failed_notice = wait_until(
        lambda: notifications_for(stack, txn_id, "transaction.failed"), what="failed notice"
    )
    assert len(failed_notice) == 1

    # Sticpay cannot cancel an order: the page is still there, and the customer pays.
    assert payment_of(stack, txn_id)["state"] == "PENDING"
    pay(stack, txn_id)
    wait_until(
        lambda: "late_success" in reasons(api, headers, txn_id),
        timeout=15,
        what="the late success recorded",
    )
    late = transaction(api, headers, txn_id)
    assert late["status"] == "FAILED"  # a terminal status never changes
    assert late["review"]["reason"] == "late_success"
    assert (late["review"]["pspAmount"], late["review"]["pspCurrency"]) == ("200.00", "USD")
    (event,) = [e for e in history(api, headers, txn_id) if e["reason"] == "late_success"]
    assert (event["fromStatus"], event["toStatus"], event["source"]) == (
        "FAILED",
        "FAILED",
        "webhook",
    )
    (notice,) = wait_until(
        lambda: notifications_for(stack, txn_id, "transaction.late_success"),
        what="late success notice",
    )
    assert notice["verified"] is True
    assert notice["body"]["data"]["status"] == "FAILED"
    assert notice["body"]["data"]["review"]["pspAmount"] == "200.00"
    assert txn_id in [item["txnId"] for item in review_list(api, headers)]

    # The same notification again changes nothing and tells nobody twice.
    (stored,) = api.get(f"{V2}/transactions/{txn_id}/webhooks", headers=headers).json()["data"][
        "items"
    ][-1:]
    assert cli("webhooks", "replay", str(stored["id"])).returncode == 0
    time.sleep(1.5)
    assert reasons(api, headers, txn_id).count("late_success") == 1
    assert len(notifications_for(stack, txn_id, "transaction.late_success")) == 1

    decided = cli("txn", "resolve", txn_id, "--status", "SUCCESS", "--reason", "goods shipped")
    assert decided.returncode == 0, decided.stdout + decided.stderr
    resolved = transaction(api, headers, txn_id)
    assert resolved["status"] == "FAILED"  # the decision is recorded beside it
    assert resolved["review"]["resolution"] == "SUCCESS"
    assert history(api, headers, txn_id)[-1]["source"] == "operator"
    assert txn_id not in [item["txnId"] for item in review_list(api, headers)]
