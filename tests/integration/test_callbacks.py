"""PSP webhooks, customer redirects and merchant notifications through real processes."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from connxt.settings import get_settings
from storage.db import session_scope
from storage.models import Environment
from tests.support.flows import (
    V2,
    create_psp,
    customer_decides,
    events,
    paymaxis_psp,
    reference_payload,
    sandbox_payments,
    target,
    transaction_body,
    wait_status,
)
from tests.support.stack import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def merchant(stack, make_tenant):
    """A tenant whose notifications go to the sandbox's merchant receiver."""
    issued, headers = make_tenant("shop", "live")
    with session_scope() as session:
        session.get(
            Environment, issued.environment_id
        ).notification_url = f"{stack.sandbox_url}/merchant/notifications"
    httpx.put(f"{stack.sandbox_url}/_control/merchant", json={"secret": issued.notification_secret})
    return issued, headers


@pytest.fixture
def paymaxis(api, stack, merchant):
    _, headers = merchant
    flow_target, psp, credential = paymaxis_psp(api, stack.sandbox_url, headers)
    return headers, flow_target, psp, credential


def deposit(api, headers, flow_target, psp, **extra) -> dict:
    answer = api.post(
        f"{V2}/transactions", headers=headers, json=transaction_body(psp, flow_target, **extra)
    )
    assert answer.status_code in (200, 202), answer.text
    return answer.json()["data"]


def payment_of(stack, txn_id: str) -> dict:
    (payment,) = sandbox_payments(stack.sandbox_url, txn_id)
    return payment


def notifications_for(stack, txn_id: str) -> list[dict]:
    received = httpx.get(f"{stack.sandbox_url}/merchant/notifications").json()["notifications"]
    return [
        n
        for n in received
        if isinstance(n["body"], dict) and n["body"].get("data", {}).get("txnId") == txn_id
    ]


def signed_webhook(credential: dict, payment: dict) -> tuple[bytes, dict]:
    body = json.dumps(payment).encode()
    signature = hmac.new(credential["webhookSigningKey"].encode(), body, hashlib.sha256)
    return body, {"Signature": signature.hexdigest(), "Content-Type": "application/json"}


def completed(payment_id: str, txn_id: str) -> dict:
    return {
        "id": payment_id,
        "referenceId": txn_id,
        "state": "COMPLETED",
        "amount": 200,
        "currency": "USD",
        "paymentType": "DEPOSIT",
    }


def test_customer_approves_and_merchant_is_notified_once(api, stack, paymaxis):
    headers, flow_target, psp, _ = paymaxis
    data = deposit(api, headers, flow_target, psp)
    page = data["data"]["data"]["navigation"]["value"]
    approved = httpx.post(page, data={"decision": "approve"}, follow_redirects=False)
    assert approved.status_code == 303
    back = approved.headers["location"]
    assert back == f"{stack.api_url}{V2}/external/redirects/{data['txnId']}"
    browser = api.get(back, follow_redirects=False)
    assert browser.status_code == 303

    wait_status(api, headers, data["txnId"], {"SUCCESS"})
    assert events(api, headers, data["txnId"]) == [
        ("NEW", "CREATED"),
        ("CREATED", "INITIATED"),
        ("INITIATED", "PG_ACCEPTED"),
        ("PG_ACCEPTED", "SUCCESS"),
    ]
    received = wait_until(lambda: notifications_for(stack, data["txnId"]), what="notification")
    time.sleep(1.5)  # room for a duplicate to show up, if one were coming
    received = notifications_for(stack, data["txnId"])
    assert len(received) == 1
    assert received[0]["verified"] is True
    assert received[0]["body"]["data"]["status"] == "SUCCESS"
    listed = api.get(f"{V2}/transactions/{data['txnId']}/notifications", headers=headers)
    (notification,) = listed.json()["data"]["items"]
    assert notification["status"] == "DELIVERED"
    assert notification["id"] == received[0]["webhookId"]


def test_customer_declines_and_the_deposit_fails(api, stack, paymaxis):
    headers, flow_target, psp, _ = paymaxis
    data = deposit(api, headers, flow_target, psp)
    httpx.post(data["data"]["data"]["navigation"]["value"], data={"decision": "decline"})
    final = wait_status(api, headers, data["txnId"], {"FAILED", "SUCCESS"})
    assert final["status"] == "FAILED"
    assert events(api, headers, data["txnId"])[-1] == ("PG_ACCEPTED", "FAILED")


def test_webhook_before_the_initiation_answer(api, stack, paymaxis):
    headers, flow_target, psp, credential = paymaxis
    httpx.put(f"{stack.sandbox_url}/_control", json={"delay_ms": 2500})
    data = deposit(api, headers, flow_target, psp, **{})
    txn_id = data["txnId"]
    # The PSP has the payment but its answer is still on the way: notify COMPLETED now.
    payment = wait_until(lambda: payment_of(stack, txn_id), what="payment at the PSP")
    body, signature = signed_webhook(credential, completed(payment["id"], txn_id))
    answer = api.post(f"{V2}/external/webhooks/{psp['id']}", content=body, headers=signature)
    assert answer.status_code == 200
    wait_status(api, headers, txn_id, {"SUCCESS"})
    time.sleep(3)  # the late initiation answer lands now and must change nothing
    assert wait_status(api, headers, txn_id, {"SUCCESS"})["status"] == "SUCCESS"
    steps = events(api, headers, txn_id)
    assert steps.count(("PG_ACCEPTED", "SUCCESS")) == 1
    assert steps[-1] == ("PG_ACCEPTED", "SUCCESS")


def test_redirect_before_webhook_settles_through_an_inquiry(api, stack, paymaxis):
    headers, flow_target, psp, _ = paymaxis
    httpx.put(f"{stack.sandbox_url}/_control", json={"webhook_delay_ms": 4000})
    data = deposit(api, headers, flow_target, psp)
    customer_decides(stack.sandbox_url, data["txnId"])
    browser = api.get(f"{V2}/external/redirects/{data['txnId']}", follow_redirects=False)
    assert browser.status_code == 303
    wait_status(api, headers, data["txnId"], {"SUCCESS"}, timeout=3.5)  # before the webhook
    time.sleep(4)  # now the webhook arrives: a duplicate of what the inquiry found
    assert events(api, headers, data["txnId"]).count(("PG_ACCEPTED", "SUCCESS")) == 1
    assert len(notifications_for(stack, data["txnId"])) == 1


def test_redirect_goes_to_the_merchants_return_url(api, stack, paymaxis):
    headers, flow_target, psp, _ = paymaxis
    payload_urls = {"returnUrl": "https://shop.example/back?cart=7"}
    data = deposit(api, headers, flow_target, psp, payload=reference_payload(**payload_urls))
    browser = api.get(f"{V2}/external/redirects/{data['txnId']}", follow_redirects=False)
    assert browser.status_code == 303
    location = browser.headers["location"]
    assert location.startswith("https://shop.example/back?cart=7&txnId=" + data["txnId"])


def test_two_hundred_copies_of_one_webhook_apply_once(api, stack, paymaxis):
    headers, flow_target, psp, credential = paymaxis
    data = deposit(api, headers, flow_target, psp)
    payment = payment_of(stack, data["txnId"])
    body, signature = signed_webhook(credential, completed(payment["id"], data["txnId"]))
    url = f"{stack.api_url}{V2}/external/webhooks/{psp['id']}"
    with httpx.Client(timeout=30) as client, ThreadPoolExecutor(20) as pool:
        codes = list(
            pool.map(
                lambda _: client.post(url, content=body, headers=signature).status_code, range(200)
            )
        )
    assert codes == [200] * 200
    wait_status(api, headers, data["txnId"], {"SUCCESS"})
    wait_until(lambda: notifications_for(stack, data["txnId"]), what="notification")
    time.sleep(1.5)
    assert events(api, headers, data["txnId"]).count(("PG_ACCEPTED", "SUCCESS")) == 1
    assert len(notifications_for(stack, data["txnId"])) == 1


def test_forged_signature_is_refused_and_changes_nothing(api, stack, paymaxis):
    headers, flow_target, psp, credential = paymaxis
    data = deposit(api, headers, flow_target, psp)
    payment = payment_of(stack, data["txnId"])
    body, _ = signed_webhook(credential, completed(payment["id"], data["txnId"]))
    forged = {"Signature": "0" * 64, "Content-Type": "application/json"}
    answer = api.post(f"{V2}/external/webhooks/{psp['id']}", content=body, headers=forged)
    assert answer.status_code == 401
    assert answer.json()["code"] == "401"
    time.sleep(1)
    assert (
        api.get(f"{V2}/transactions/{data['txnId']}", headers=headers).json()["data"]["status"]
        == "PG_ACCEPTED"
    )


def test_webhook_naming_another_tenants_transaction_is_ignored(api, stack, paymaxis, make_tenant):
    headers, flow_target, psp, credential = paymaxis
    _, other_headers = make_tenant("rival", "live")
    rival_psp = create_psp(api, other_headers, flow_target, {"apiKey": "rival"})
    theirs = deposit(api, other_headers, flow_target, rival_psp)
    payment = payment_of(stack, theirs["txnId"])
    # Signed with *our* key, sent to *our* PSP id, but naming their transaction.
    body, signature = signed_webhook(credential, completed(payment["id"], theirs["txnId"]))
    answer = api.post(f"{V2}/external/webhooks/{psp['id']}", content=body, headers=signature)
    assert answer.status_code == 200
    time.sleep(1.5)
    status = api.get(f"{V2}/transactions/{theirs['txnId']}", headers=other_headers).json()
    assert status["data"]["status"] == "PG_ACCEPTED"


def test_bad_webhook_requests(api, stack, paymaxis):
    _, _, psp, _ = paymaxis
    unknown = api.post(f"{V2}/external/webhooks/psp_unknown", content=b"{}")
    assert unknown.status_code == 404
    garbage = api.post(f"{V2}/external/webhooks/{psp['id']}", content=b"not json")
    assert garbage.status_code in (400, 401)
    huge = api.post(f"{V2}/external/webhooks/{psp['id']}", content=b"x" * (1024 * 1024 + 1))
    assert huge.status_code == 413


def test_webhook_without_signing_key_only_triggers_an_inquiry(api, stack, merchant):
    _, headers = merchant
    credential = {"apiKey": f"pmx_{secrets.token_hex(6)}"}
    flow_target = target(api, headers, "Paymaxis")
    psp = create_psp(api, headers, flow_target, credential, name="Unsigned")
    data = deposit(api, headers, flow_target, psp)
    payment = payment_of(stack, data["txnId"])
    # A claim of COMPLETED the PSP does not back: the inquiry finds it still in checkout.
    body = json.dumps(completed(payment["id"], data["txnId"])).encode()
    answer = api.post(f"{V2}/external/webhooks/{psp['id']}", content=body)
    assert answer.status_code == 200
    time.sleep(2)
    assert (
        api.get(f"{V2}/transactions/{data['txnId']}", headers=headers).json()["data"]["status"]
        == "PG_ACCEPTED"
    )


def test_merchant_down_then_up_gets_the_notification_once(api, stack, paymaxis):
    headers, flow_target, psp, _ = paymaxis
    httpx.put(f"{stack.sandbox_url}/_control", json={"merchant_fail": True})
    data = deposit(api, headers, flow_target, psp)
    customer_decides(stack.sandbox_url, data["txnId"])
    wait_status(api, headers, data["txnId"], {"SUCCESS"})

    def attempts():
        items = api.get(f"{V2}/transactions/{data['txnId']}/notifications", headers=headers)
        return items.json()["data"]["items"]

    wait_until(lambda: attempts() and attempts()[0]["attempts"] >= 2, what="failed attempts")
    httpx.put(f"{stack.sandbox_url}/_control", json={"merchant_fail": False})
    wait_until(lambda: attempts()[0]["status"] == "DELIVERED", timeout=30, what="delivery")
    delivered = [n for n in notifications_for(stack, data["txnId"]) if n["answered"] == 204]
    assert len(delivered) == 1
    assert all(d["statusCode"] in (503, 204) for d in attempts()[0]["deliveries"])


def test_sticpay_hosted_page_and_signed_callback_settle_the_deposit(api, stack, merchant):
    _, headers = merchant
    credential = {"merchantEmail": f"m{secrets.token_hex(4)}@shop.example", "apiKey": "stk-1"}
    httpx.put(f"{stack.sandbox_url}/_control/accounts", json=credential)
    flow_target = target(api, headers, "Sticpay")
    psp = create_psp(api, headers, flow_target, credential, name="Sticpay")
    data = deposit(api, headers, flow_target, psp)
    assert data["status"] == "PG_ACCEPTED"
    page_url = data["data"]["data"]["navigation"]["value"]
    assert page_url.startswith(f"{stack.sandbox_url}/sticpay/pay?")
    assert "stk-1" not in page_url  # signed with the key, never carrying it
    page = httpx.get(page_url)
    assert page.status_code == 200
    payment = payment_of(stack, data["txnId"])
    approved = httpx.post(
        f"{stack.sandbox_url}/sticpay/pay/{payment['id']}",
        data={"decision": "approve"},
        follow_redirects=False,
    )
    assert approved.status_code == 303
    wait_status(api, headers, data["txnId"], {"SUCCESS"})
    wait_until(lambda: notifications_for(stack, data["txnId"]), what="notification")
    assert events(api, headers, data["txnId"])[-1] == ("PG_ACCEPTED", "SUCCESS")


def test_an_unsigned_copy_never_takes_the_slot_of_the_signed_webhook(api, stack, merchant):
    """An account that took unsigned bodies (made in development, or before the key was
    required) gets its key; the genuine signed webhook that follows an unsigned copy of it
    is stored and applied, not acknowledged as a duplicate of the copy."""
    _, headers = merchant
    credential = {"apiKey": f"pmx_{secrets.token_hex(6)}"}
    flow_target = target(api, headers, "Paymaxis")
    psp = create_psp(api, headers, flow_target, credential, name="Keyed later")
    data = deposit(api, headers, flow_target, psp)
    payment = payment_of(stack, data["txnId"])
    url = f"{V2}/external/webhooks/{psp['id']}"
    unsigned = json.dumps(completed(payment["id"], data["txnId"])).encode()
    first = api.post(url, content=unsigned, headers={"Content-Type": "application/json"})
    assert first.status_code == 200 and first.json()["data"]["duplicate"] is False
    again = api.post(url, content=unsigned, headers={"Content-Type": "application/json"})
    assert again.json()["data"]["duplicate"] is True  # copies of the copy are still one

    keyed = {**credential, "webhookSigningKey": secrets.token_hex(16)}
    patched = api.patch(
        f"{V2}/psps/{psp['id']}", headers=headers, json={"credential": json.dumps(keyed)}
    )
    assert patched.status_code == 200, patched.text
    # The worker opens a rotated credential within CONNXT_PSP_CACHE_SECONDS (storage.psp_context).
    time.sleep(get_settings().psp_cache_seconds + 0.5)
    body, signature = signed_webhook(keyed, completed(payment["id"], data["txnId"]))
    assert body == unsigned
    genuine = api.post(url, content=body, headers=signature)
    assert genuine.status_code == 200, genuine.text
    assert genuine.json()["data"]["duplicate"] is False, "the unsigned copy took its slot"
    assert wait_status(api, headers, data["txnId"], {"SUCCESS"})["status"] == "SUCCESS"
    stored = api.get(f"{V2}/transactions/{data['txnId']}/webhooks", headers=headers).json()
    assert sorted(w["verified"] for w in stored["data"]["items"]) == [False, True]
