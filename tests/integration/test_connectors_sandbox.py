"""The connectors against the sandbox over real HTTP, webhooks caught by a local receiver."""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from connectors.base import Action, InvalidSignature, Outcome, PaymentRequest, PspResult
from connectors.paymaxis import PaymaxisConnector
from connectors.psp_client import PspClient
from connectors.signing import sticpay_sign_valid
from connectors.sticpay import SticpayConnector
from connectors.transport import new_client
from sandbox.app import create_app
from sandbox.testing import WebhookCatcher, serve
from workers.notify import sign as standard_sign

PMX_CRED = {"apiKey": "pk_it_secret", "webhookSigningKey": "whk_it_secret"}
STP_CRED = {"merchantEmail": "merchant@example.com", "apiKey": "stp_it_secret"}
SECRETS = ("pk_it_secret", "whk_it_secret", "stp_it_secret")
CUSTOMER = {
    "id": "cust_001",
    "firstName": "Premium",
    "lastName": "Customer",
    "email": "customer.a@example.com",
    "phone": {"phoneNumber": "5550100", "countryCode": "1"},
    "address": {"line1": "123 Main St", "city": "San Francisco", "country": "US"},
}


@pytest.fixture(scope="module")
def sandbox_url() -> Iterator[str]:
    with serve(create_app()) as url:
        yield url


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookCatcher]:
    catcher = WebhookCatcher()
    with serve(catcher.app) as url:
        catcher.url = url
        yield catcher


@pytest.fixture(scope="module")
def http(sandbox_url: str) -> Iterator[httpx.Client]:
    """Relative URLs go to the sandbox; the connectors share it with absolute ones."""
    with httpx.Client(base_url=sandbox_url, timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
def psp_client() -> Iterator[PspClient]:
    """What the connectors send through, as the worker's own (connectors.psp_client)."""
    client = new_client(httpx.Timeout(10))
    yield client
    client.close()


@pytest.fixture(autouse=True)
def clean_sandbox(http: httpx.Client) -> None:
    http.post("/_control/reset").raise_for_status()
    http.put("/_control/accounts", json=PMX_CRED).raise_for_status()
    http.put("/_control/accounts", json=STP_CRED).raise_for_status()


@pytest.fixture
def paymaxis(sandbox_url: str, psp_client: PspClient) -> PaymaxisConnector:
    return PaymaxisConnector(base_url=f"{sandbox_url}/paymaxis", client=psp_client)


@pytest.fixture
def sticpay(sandbox_url: str, psp_client: PspClient) -> SticpayConnector:
    return SticpayConnector(base_url=f"{sandbox_url}/sticpay", client=psp_client)


def _request(receiver, action=Action.DEPOSIT, amount="12.50", currency="USD", parent=None):
    txn_id = f"txn_{uuid.uuid4().hex[:12]}"
    return PaymentRequest(
        txn_id=txn_id,
        action=action,
        amount=Decimal(amount),
        currency=currency,
        payload={"body": {"customer": CUSTOMER, "order": {"id": "o1"}, "language": "en"}},
        return_url=f"{receiver.url}/return/{txn_id}",
        webhook_url=f"{receiver.url}/hooks/{txn_id}",
        parent_psp_txn_id=parent,
    )


def _no_secrets(*results: PspResult) -> None:
    text = json.dumps([e.as_dict() for r in results for e in r.exchanges])
    for secret in SECRETS:
        assert secret not in text


def _payments(http: httpx.Client, reference: str) -> list[dict[str, Any]]:
    return http.get("/_payments", params={"referenceId": reference}).json()["payments"]


def _control(http: httpx.Client, **settings: Any) -> None:
    http.put("/_control", json=settings).raise_for_status()


# -- Paymaxis -----------------------------------------------------------------------------


def test_paymaxis_deposit_approved_on_the_hosted_page(paymaxis, receiver, http, sandbox_url):
    request = _request(receiver)
    result = paymaxis.initiate(PMX_CRED, request)
    assert result.outcome is Outcome.ACCEPTED and result.psp_state == "CHECKOUT"
    assert result.navigation is not None
    assert result.navigation.value == f"{sandbox_url}/paymaxis/checkout/{result.psp_txn_id}"
    sent = result.exchanges[-1].request_body
    assert sent["amount"] == 12.5 and sent["referenceId"] == request.txn_id
    assert sent["customer"]["phone"] == "1 5550100"
    assert sent["billingAddress"]["countryCode"] == "US"

    page = http.get(result.navigation.value)
    assert page.status_code == 200 and "12.50" in page.text and "Approve" in page.text
    answer = http.post(result.navigation.value, data={"decision": "approve"})
    assert answer.status_code == 303 and answer.headers["location"] == request.return_url

    (hook,) = receiver.wait_for(f"/hooks/{request.txn_id}")
    event = paymaxis.parse_webhook(PMX_CRED, hook["headers"], hook["body"])
    assert event.verified and event.outcome is Outcome.COMPLETED
    assert (event.txn_id, event.psp_txn_id) == (request.txn_id, result.psp_txn_id)
    assert event.amount == Decimal("12.50")

    by_id = paymaxis.inquire(PMX_CRED, request.txn_id, result.psp_txn_id)
    by_reference = paymaxis.inquire(PMX_CRED, request.txn_id, None)
    assert by_id.outcome is by_reference.outcome is Outcome.COMPLETED
    _no_secrets(result, by_id, by_reference)


def test_paymaxis_deposit_declined_by_the_customer_fails(paymaxis, receiver, http):
    request = _request(receiver)
    result = paymaxis.initiate(PMX_CRED, request)
    http.post(result.navigation.value, data={"decision": "decline"})
    (hook,) = receiver.wait_for(f"/hooks/{request.txn_id}")
    event = paymaxis.parse_webhook(PMX_CRED, hook["headers"], hook["body"])
    assert event.verified and event.outcome is Outcome.FAILED and event.psp_state == "DECLINED"
    assert paymaxis.inquire(PMX_CRED, request.txn_id, result.psp_txn_id).outcome is Outcome.FAILED


def test_paymaxis_fault_decline_is_declined(paymaxis, receiver, http):
    _control(http, fail="decline")
    result = paymaxis.initiate(PMX_CRED, _request(receiver))
    assert result.outcome is Outcome.DECLINED and result.reason == "DECLINED_BY_SANDBOX"
    assert result.navigation is None


def test_paymaxis_5xx_is_unknown_never_declined(paymaxis, receiver, http):
    _control(http, fail="5xx")
    request = _request(receiver)
    result = paymaxis.initiate(PMX_CRED, request)
    assert result.outcome is Outcome.UNKNOWN and result.reason == "HTTP 503"
    assert paymaxis.inquire(PMX_CRED, request.txn_id, None).outcome is Outcome.UNKNOWN
    assert _payments(http, request.txn_id) == []


def test_paymaxis_timeout_is_unknown(receiver, http, sandbox_url):
    _control(http, fail="timeout", delay_ms=2000)
    short = new_client(httpx.Timeout(0.5, connect=1.0))
    paymaxis = PaymaxisConnector(base_url=f"{sandbox_url}/paymaxis", client=short)
    started = time.monotonic()
    result = paymaxis.initiate(PMX_CRED, _request(receiver))
    short.close()
    assert time.monotonic() - started < 1.8
    assert result.outcome is Outcome.UNKNOWN and "Timeout" in result.reason
    assert result.exchanges[0].status_code is None


def test_paymaxis_retried_initiate_makes_one_payment(paymaxis, receiver, http):
    request = _request(receiver)
    first = paymaxis.initiate(PMX_CRED, request)
    again = paymaxis.initiate(PMX_CRED, request)
    assert first.psp_txn_id == again.psp_txn_id and again.outcome is Outcome.ACCEPTED
    assert again.navigation == first.navigation
    assert [e.method for e in again.exchanges] == ["GET"]  # found by referenceId, not created
    assert len(_payments(http, request.txn_id)) == 1


def test_paymaxis_idempotency_key_returns_the_same_payment(http):
    body = {"paymentType": "DEPOSIT", "amount": 5, "currency": "EUR", "referenceId": "r-idem"}
    headers = {"Authorization": "Bearer pk_it_secret", "Idempotency-Key": "r-idem"}
    url = "/paymaxis/api/v1/payments"
    ids = {http.post(url, json=body, headers=headers).json()["result"]["id"] for _ in range(3)}
    assert len(ids) == 1 and len(_payments(http, "r-idem")) == 1


def test_paymaxis_requires_a_bearer_key(http):
    answer = http.get("/paymaxis/api/v1/payments")
    assert answer.status_code == 401 and answer.json()["status"] == 401
    bad = http.get("/paymaxis/api/v1/payments", headers={"Authorization": "Basic pk"})
    assert bad.status_code == 401


def test_paymaxis_withdrawal_completes_directly(paymaxis, receiver):
    request = _request(receiver, Action.WITHDRAW, amount="7", currency="KWD")
    result = paymaxis.initiate(PMX_CRED, request)
    assert result.outcome is Outcome.COMPLETED and result.navigation is None
    assert result.exchanges[-1].request_body["paymentType"] == "WITHDRAWAL"
    assert result.exchanges[-1].request_body["amount"] == 7  # sent as the number 7.000
    (hook,) = receiver.wait_for(f"/hooks/{request.txn_id}")
    assert paymaxis.parse_webhook(PMX_CRED, hook["headers"], hook["body"]).verified


def test_paymaxis_refunds_up_to_the_remainder(paymaxis, receiver, http):
    deposit = _request(receiver, amount="100.00")
    accepted = paymaxis.initiate(PMX_CRED, deposit)
    done = http.post(f"/_control/complete/{accepted.psp_txn_id}", json={"decision": "approve"})
    assert done.json()["payment"]["state"] == "COMPLETED"

    refund = paymaxis.initiate(
        PMX_CRED, _request(receiver, Action.REFUND, "60.00", parent=accepted.psp_txn_id)
    )
    assert refund.outcome is Outcome.COMPLETED
    assert refund.exchanges[-1].request_body["parentPaymentId"] == accepted.psp_txn_id
    too_much = paymaxis.initiate(
        PMX_CRED, _request(receiver, Action.REFUND, "40.01", parent=accepted.psp_txn_id)
    )
    assert too_much.outcome is Outcome.DECLINED and "refundable" in too_much.reason
    rest = paymaxis.initiate(
        PMX_CRED, _request(receiver, Action.REFUND, "40.00", parent=accepted.psp_txn_id)
    )
    assert rest.outcome is Outcome.COMPLETED
    _no_secrets(accepted, refund, too_much, rest)


def test_paymaxis_refund_of_an_open_deposit_is_refused(paymaxis, receiver):
    accepted = paymaxis.initiate(PMX_CRED, _request(receiver))
    refund = paymaxis.initiate(
        PMX_CRED, _request(receiver, Action.REFUND, "1.00", parent=accepted.psp_txn_id)
    )
    assert refund.outcome is Outcome.DECLINED


def test_paymaxis_unknown_payment_is_not_found(paymaxis):
    assert paymaxis.inquire(PMX_CRED, "txn_nope", None).outcome is Outcome.NOT_FOUND
    assert paymaxis.inquire(PMX_CRED, "txn_nope", "pmx_nope").outcome is Outcome.NOT_FOUND


def test_webhooks_are_retried_until_accepted(paymaxis, receiver):
    request = _request(receiver, Action.WITHDRAW)
    receiver.refuse[f"/hooks/{request.txn_id}"] = 2
    paymaxis.initiate(PMX_CRED, request)
    (hook,) = receiver.wait_for(f"/hooks/{request.txn_id}")
    attempts = receiver.attempts(f"/hooks/{request.txn_id}")
    assert [a["status"] for a in attempts] == [500, 500, 200]
    assert {a["body"] for a in attempts} == {hook["body"]}


# -- Sticpay ------------------------------------------------------------------------------


def _pay_action(page: str) -> str:
    match = re.search(r'<form method="post" action="([^"]+)"', page)
    assert match, page
    return match.group(1)


def test_sticpay_deposit_on_the_hosted_page(sticpay, receiver, http, sandbox_url):
    request = _request(receiver, currency="JPY", amount="1500")
    result = sticpay.initiate(STP_CRED, request)
    assert result.outcome is Outcome.ACCEPTED and result.exchanges == ()
    url = urlsplit(result.navigation.value)
    params = dict(parse_qsl(url.query))
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{sandbox_url}/sticpay/pay"
    assert params["order_amount"] == "1500" and sticpay_sign_valid(params, "stp_it_secret")

    page = http.get(result.navigation.value)
    assert page.status_code == 200 and "1500" in page.text
    assert sticpay.inquire(STP_CRED, request.txn_id, None).outcome is Outcome.ACCEPTED
    answer = http.post(_pay_action(page.text), data={"decision": "approve"})
    assert answer.status_code == 303 and answer.headers["location"] == request.return_url

    (hook,) = receiver.wait_for(f"/hooks/{request.txn_id}")
    assert hook["headers"]["content-type"] == "application/x-www-form-urlencoded"
    event = sticpay.parse_webhook(STP_CRED, hook["headers"], hook["body"])
    assert event.verified and event.outcome is Outcome.COMPLETED
    assert event.txn_id == request.txn_id and event.identity == f"{event.psp_txn_id}:SUCCESS"
    assert sticpay.inquire(STP_CRED, request.txn_id, None).outcome is Outcome.COMPLETED

    tampered = hook["body"].replace(b"status=SUCCESS", b"status=FAILED")
    with pytest.raises(InvalidSignature):
        sticpay.parse_webhook(STP_CRED, hook["headers"], tampered)
    with pytest.raises(InvalidSignature):
        sticpay.parse_webhook({**STP_CRED, "apiKey": "other"}, hook["headers"], hook["body"])


def test_sticpay_declined_deposit_fails(sticpay, receiver, http):
    request = _request(receiver)
    page = http.get(sticpay.initiate(STP_CRED, request).navigation.value)
    answer = http.post(_pay_action(page.text), data={"decision": "decline"})
    assert answer.status_code == 303
    (hook,) = receiver.wait_for(f"/hooks/{request.txn_id}")
    assert sticpay.parse_webhook(STP_CRED, {}, hook["body"]).outcome is Outcome.FAILED


def test_sticpay_page_refuses_a_bad_sign(sticpay, receiver, http):
    url = sticpay.initiate(STP_CRED, _request(receiver)).navigation.value
    assert http.get(url.replace("order_amount=12.50", "order_amount=1.00")).status_code == 401


def test_sticpay_withdrawal_refund_and_query(sticpay, receiver, http):
    payout = sticpay.initiate(STP_CRED, _request(receiver, Action.WITHDRAW, "25"))
    assert payout.outcome is Outcome.COMPLETED and payout.psp_txn_id.startswith("stp_")
    assert payout.exchanges[-1].request_body["sign"] == "***"

    deposit = _request(receiver, amount="30.00")
    http.get(sticpay.initiate(STP_CRED, deposit).navigation.value)
    (paid,) = _payments(http, deposit.txn_id)
    http.post(f"/_control/complete/{paid['id']}", json={"decision": "approve"})
    refund = sticpay.initiate(
        STP_CRED, _request(receiver, Action.REFUND, "30.00", parent=paid["id"])
    )
    assert refund.outcome is Outcome.COMPLETED
    over = sticpay.initiate(STP_CRED, _request(receiver, Action.REFUND, "0.01", parent=paid["id"]))
    assert over.outcome is Outcome.DECLINED and "refundable" in over.reason
    assert sticpay.inquire(STP_CRED, "txn_nope", None).outcome is Outcome.NOT_FOUND
    _no_secrets(payout, refund, over)


def test_sticpay_retried_withdrawal_is_not_sent_twice(sticpay, receiver, http):
    request = _request(receiver, Action.WITHDRAW, "25")
    first, again = sticpay.initiate(STP_CRED, request), sticpay.initiate(STP_CRED, request)
    assert first.psp_txn_id == again.psp_txn_id and len(again.exchanges) == 1
    assert len(_payments(http, request.txn_id)) == 1


def test_sticpay_faults(sticpay, receiver, http):
    for fail, outcome in (("5xx", Outcome.UNKNOWN), ("decline", Outcome.DECLINED)):
        _control(http, fail=fail)
        assert sticpay.initiate(STP_CRED, _request(receiver, Action.WITHDRAW)).outcome is outcome
    _control(http, fail="none")
    wrong = {**STP_CRED, "apiKey": "wrong"}
    refused = sticpay.initiate(wrong, _request(receiver, Action.WITHDRAW))
    assert refused.outcome is Outcome.DECLINED and refused.reason == "sign does not match"


# -- controls and the merchant receiver ---------------------------------------------------


def test_control_round_trip(http):
    _control(http, delay_ms=5)
    _control(http, webhook_delay_ms=7)
    expected = dict(delay_ms=5, fail="none", webhook_delay_ms=7, merchant_fail=False)
    assert http.get("/_control").json() == expected
    assert http.put("/_control", json={"fail": "sometimes"}).status_code == 422


def _notify(http: httpx.Client, secret: str, tamper: bool = False) -> int:
    body = json.dumps({"type": "transaction.updated", "data": {"txnId": "txn_1"}}).encode()
    msg_id, timestamp = f"msg_{uuid.uuid4().hex}", str(int(time.time()))
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": standard_sign(secret, msg_id, timestamp, body),
        "content-type": "application/json",
    }
    sent = body + b" " if tamper else body
    return http.post("/merchant/notifications", content=sent, headers=headers).status_code


def test_merchant_receiver_checks_standard_webhooks(http):
    secret = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
    http.put("/_control/merchant", json={"secret": secret}).raise_for_status()
    assert _notify(http, secret) == 204
    assert _notify(http, secret, tamper=True) == 401
    assert _notify(http, "whsec_" + base64.b64encode(b"x" * 32).decode()) == 401
    _control(http, merchant_fail=True)
    assert _notify(http, secret) == 503
    seen = http.get("/merchant/notifications").json()["notifications"]
    expected = [(True, 204), (False, 401), (False, 401), (True, 503)]
    assert [(n["verified"], n["answered"]) for n in seen] == expected
    http.put("/_control/merchant", json={"secret": None}).raise_for_status()


def test_sandbox_listing_and_missing_page(http, paymaxis, receiver):
    request = _request(receiver)
    paymaxis.initiate(PMX_CRED, request)
    everything = http.get("/_payments").json()["payments"]
    (mine,) = [p for p in everything if p["referenceId"] == request.txn_id]
    assert mine["amount"] == 12.5 and mine["paymentType"] == "DEPOSIT"
    assert http.get("/paymaxis/checkout/pmx_missing").status_code == 404


def test_paymaxis_first_attempt_skips_the_lookup_and_a_retry_finds_it(paymaxis, receiver, http):
    request = _request(receiver)
    first = paymaxis.initiate(PMX_CRED, replace(request, may_exist=False))
    assert [e.method for e in first.exchanges] == ["POST"]  # one round trip
    retry = paymaxis.initiate(PMX_CRED, request)  # may_exist defaults to True
    assert [e.method for e in retry.exchanges] == ["GET"]  # found, nothing created
    assert retry.psp_txn_id == first.psp_txn_id
    assert len(_payments(http, request.txn_id)) == 1
