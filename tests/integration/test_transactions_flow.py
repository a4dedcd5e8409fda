"""Step 3 end to end through real processes: API, Celery worker, beat, sandbox PSPs."""

from __future__ import annotations

import httpx
import pytest

from tests.support.flows import (
    V2,
    create_psp,
    events,
    sandbox_payments,
    target,
    transaction_body,
    wait_status,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def paymaxis(api, tenant):
    issued, headers = tenant
    flow_target = target(api, headers, "Paymaxis")
    psp = create_psp(api, headers, flow_target, {"apiKey": "pmx_test_key"})
    return headers, flow_target, psp


def test_deposit_answers_the_reference_redirect_shape(api, paymaxis, stack):
    headers, flow_target, psp = paymaxis
    answer = api.post(
        f"{V2}/transactions", headers=headers, json=transaction_body(psp, flow_target)
    )
    assert answer.status_code == 200, answer.text
    envelope = answer.json()
    assert envelope["code"] == "200"
    assert envelope["message"] == "Transaction created successfully"
    data = envelope["data"]
    assert data["success"] is True
    assert data["error"] is None
    assert data["status"] == "PG_ACCEPTED"
    inner = data["data"]
    assert inner["__type"] == "success"
    navigation = inner["data"]["navigation"]
    assert navigation["type"] == "redirect"
    assert navigation["contentType"] == "url"
    assert navigation["value"].startswith(stack.sandbox_url)
    assert inner["data"]["status"] == "success"
    assert inner["data"]["orderId"] == "1758818848508"
    assert inner["data"]["userId"] == "cust_001"
    assert set(data["meta"]) == {"logs", "http"}
    assert "pmx_test_key" not in answer.text

    txn_id = data["txnId"]
    stored = api.get(f"{V2}/transactions/{txn_id}", headers=headers).json()["data"]
    assert stored["status"] == "PG_ACCEPTED"
    assert stored["txnAmount"] == 200  # a JSON number (200.00), as in the reference
    assert stored["navigation"] == navigation
    assert stored["pspTxnId"]
    assert events(api, headers, txn_id) == [
        ("NEW", "CREATED"),
        ("CREATED", "INITIATED"),
        ("INITIATED", "PG_ACCEPTED"),
    ]
    assert len(sandbox_payments(stack.sandbox_url, txn_id)) == 1


def test_withdrawal_answers_directly_with_success(api, paymaxis):
    headers, flow_target, psp = paymaxis
    body = transaction_body(psp, flow_target, action="WITHDRAW", amount="50.25")
    answer = api.post(f"{V2}/transactions", headers=headers, json=body)
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    assert data["status"] == "SUCCESS"
    assert data["pspTxnId"]
    assert data["txnAmount"] == 50.25
    assert "navigation" not in data or data["navigation"] is None
    assert events(api, headers, data["txnId"])[-1] == ("PG_ACCEPTED", "SUCCESS")


def test_psp_decline_ends_rejected(api, paymaxis, stack):
    headers, flow_target, psp = paymaxis
    httpx.put(f"{stack.sandbox_url}/_control", json={"fail": "decline"})
    answer = api.post(
        f"{V2}/transactions", headers=headers, json=transaction_body(psp, flow_target)
    )
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    assert data["success"] is False
    assert data["status"] == "REJECTED"
    assert data["error"]["code"] == "DECLINED"
    assert events(api, headers, data["txnId"])[-2:] == [
        ("INITIATED", "PG_REJECTED"),
        ("PG_REJECTED", "REJECTED"),
    ]


def test_psp_5xx_leaves_initiated_never_failed(api, paymaxis, stack):
    headers, flow_target, psp = paymaxis
    httpx.put(f"{stack.sandbox_url}/_control", json={"fail": "5xx"})
    answer = api.post(
        f"{V2}/transactions", headers=headers, json=transaction_body(psp, flow_target)
    )
    assert answer.status_code == 202, answer.text
    data = answer.json()["data"]
    assert data["status"] == "INITIATED"
    stored = api.get(f"{V2}/transactions/{data['txnId']}", headers=headers).json()["data"]
    assert stored["status"] == "INITIATED"


def test_psp_timeout_leaves_initiated(api, paymaxis, stack):
    headers, flow_target, psp = paymaxis
    httpx.put(f"{stack.sandbox_url}/_control", json={"fail": "timeout", "delay_ms": 5000})
    answer = api.post(
        f"{V2}/transactions", headers=headers, json=transaction_body(psp, flow_target)
    )
    assert answer.status_code == 202, answer.text
    txn_id = answer.json()["data"]["txnId"]
    assert answer.json()["data"]["status"] == "INITIATED"
    # While the PSP keeps timing out, inquiries change nothing.
    stored = api.get(f"{V2}/transactions/{txn_id}", headers=headers).json()["data"]
    assert stored["status"] == "INITIATED"


def test_respond_async_answers_202_then_reaches_pg_accepted(api, paymaxis):
    headers, flow_target, psp = paymaxis
    answer = api.post(
        f"{V2}/transactions",
        headers={**headers, "Prefer": "respond-async"},
        json=transaction_body(psp, flow_target),
    )
    assert answer.status_code == 202
    data = answer.json()["data"]
    assert set(data) == {"txnId", "status"}
    wait_status(api, headers, data["txnId"], {"PG_ACCEPTED"})


def test_idempotency_key_replays_and_refuses_another_body(api, paymaxis, stack):
    headers, flow_target, psp = paymaxis
    keyed = {**headers, "Idempotency-Key": "order-42"}
    body = transaction_body(psp, flow_target)
    first = api.post(f"{V2}/transactions", headers=keyed, json=body)
    second = api.post(f"{V2}/transactions", headers=keyed, json=body)
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    txn_id = first.json()["data"]["txnId"]
    listed = api.get(f"{V2}/transactions", headers=headers).json()["data"]["items"]
    assert [t["txnId"] for t in listed] == [txn_id]
    other = api.post(f"{V2}/transactions", headers=keyed, json={**body, "txnAmount": 201})
    assert other.status_code == 422
    assert other.json()["code"] == "422"


def test_another_tenants_transaction_is_not_found(api, paymaxis, make_tenant):
    headers, flow_target, psp = paymaxis
    answer = api.post(
        f"{V2}/transactions", headers=headers, json=transaction_body(psp, flow_target)
    )
    txn_id = answer.json()["data"]["txnId"]
    _, other_headers = make_tenant("other-brand", "live")
    for path in (f"/transactions/{txn_id}", f"/transactions/{txn_id}/events"):
        assert api.get(f"{V2}{path}", headers=other_headers).status_code == 404
    assert api.get(f"{V2}/transactions", headers=other_headers).json()["data"]["items"] == []
    using_their_psp = api.post(
        f"{V2}/transactions", headers=other_headers, json=transaction_body(psp, flow_target)
    )
    # Step 3 names a PSP it cannot use as a field error, as for an unknown one.
    assert using_their_psp.status_code == 400
    assert [e["field"] for e in using_their_psp.json()["errors"]] == ["pspId"]


def test_list_filters_and_cursor_pagination(api, paymaxis):
    headers, flow_target, psp = paymaxis
    async_headers = {**headers, "Prefer": "respond-async"}
    ids = [
        api.post(
            f"{V2}/transactions", headers=async_headers, json=transaction_body(psp, flow_target)
        ).json()["data"]["txnId"]
        for _ in range(5)
    ]
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = api.get(f"{V2}/transactions", headers=headers, params=params).json()["data"]
        seen += [t["txnId"] for t in page["items"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids)
    assert len(seen) == len(set(seen)) == 5
    by_psp = api.get(f"{V2}/transactions", headers=headers, params={"pspId": "psp_nope"})
    assert by_psp.json()["data"]["items"] == []
    bad_cursor = api.get(f"{V2}/transactions", headers=headers, params={"cursor": "%%%"})
    assert bad_cursor.status_code == 400
