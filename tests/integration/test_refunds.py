"""Refunds: linked to a successful deposit of the same PSP, never above what is left."""

from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.support.flows import (
    V2,
    create_psp,
    customer_decides,
    target,
    transaction_body,
    wait_status,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def paid_deposit(api, stack, tenant):
    """A deposit of 100.00 USD the customer paid."""
    _, headers = tenant
    credential = {"apiKey": f"key_{secrets.token_hex(6)}"}
    flow_target = target(api, headers, "Paymaxis")
    psp = create_psp(api, headers, flow_target, credential)
    answer = api.post(
        f"{V2}/transactions", headers=headers, json=transaction_body(psp, flow_target, amount=100)
    )
    txn_id = answer.json()["data"]["txnId"]
    customer_decides(stack.sandbox_url, txn_id)
    wait_status(api, headers, txn_id, {"SUCCESS"})
    return headers, flow_target, psp, txn_id


def refund(api, headers, flow_target, psp, parent: str | None, amount) -> httpx.Response:
    body = transaction_body(psp, flow_target, action="REFUND", amount=amount)
    if parent is not None:
        body["parentTxnId"] = parent
    return api.post(f"{V2}/transactions", headers=headers, json=body)


def test_partial_refunds_up_to_the_remainder(api, paid_deposit):
    headers, flow_target, psp, deposit_id = paid_deposit
    first = refund(api, headers, flow_target, psp, deposit_id, "60.00")
    assert first.status_code == 200, first.text
    data = first.json()["data"]
    assert data["status"] == "SUCCESS"
    assert data["parentTxnId"] == deposit_id
    assert data["transactionType"] == "refund"

    too_much = refund(api, headers, flow_target, psp, deposit_id, "40.01")
    assert too_much.status_code == 422
    assert too_much.json()["errors"][0]["field"] == "txnAmount"
    assert "40.00" in too_much.json()["errors"][0]["message"]

    rest = refund(api, headers, flow_target, psp, deposit_id, "40")
    assert rest.status_code == 200, rest.text
    assert refund(api, headers, flow_target, psp, deposit_id, "0.01").status_code == 422


def test_concurrent_refunds_never_exceed_the_deposit(api, stack, paid_deposit):
    headers, flow_target, psp, deposit_id = paid_deposit
    with ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(
                lambda _: refund(api, headers, flow_target, psp, deposit_id, "30.00"), range(8)
            )
        )
    accepted = [a for a in answers if a.status_code in (200, 202)]
    assert len(accepted) == 3  # 3 × 30 ≤ 100 < 4 × 30
    assert all(a.status_code == 422 for a in answers if a not in accepted)


def test_refund_needs_a_successful_deposit_parent(api, paid_deposit, make_tenant):
    headers, flow_target, psp, deposit_id = paid_deposit
    missing = refund(api, headers, flow_target, psp, None, "1.00")
    assert missing.status_code == 400
    assert missing.json()["errors"][0]["field"] == "parentTxnId"

    unknown = refund(api, headers, flow_target, psp, "txn_nope", "1.00")
    assert unknown.status_code == 400

    pending = api.post(
        f"{V2}/transactions", headers=headers, json=transaction_body(psp, flow_target)
    ).json()["data"]["txnId"]
    not_paid = refund(api, headers, flow_target, psp, pending, "1.00")
    assert not_paid.status_code == 400
    assert "successful deposit" in not_paid.text

    other = transaction_body(psp, flow_target, action="DEPOSIT", parentTxnId=deposit_id)
    assert api.post(f"{V2}/transactions", headers=headers, json=other).status_code == 400

    _, other_headers = make_tenant("thief", "live")
    their_psp = create_psp(api, other_headers, flow_target, {"apiKey": "x"})
    stolen = refund(api, other_headers, flow_target, their_psp, deposit_id, "1.00")
    assert stolen.status_code == 400  # another tenant's deposit does not exist for them
