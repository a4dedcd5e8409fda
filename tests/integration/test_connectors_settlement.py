"""What the connectors report for settling a payment: the PSP's amount and currency, and
what cancelling an unpaid payment does, against the sandbox over real HTTP."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest

from connectors.base import Action, Cancellable, Outcome, PaymentRequest
from connectors.money import reported_amount
from connectors.paymaxis import PaymaxisConnector
from connectors.psp_client import PspClient
from connectors.sticpay import SticpayConnector
from connectors.transport import new_client
from sandbox.app import create_app
from sandbox.testing import WebhookCatcher, serve

PMX_CRED = {"apiKey": "pk_settle", "webhookSigningKey": "whk_settle"}
STP_CRED = {"merchantEmail": "settle@example.com", "apiKey": "stp_settle"}


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
    with httpx.Client(base_url=sandbox_url, timeout=10) as client:
        client.put("/_control/accounts", json=PMX_CRED).raise_for_status()
        client.put("/_control/accounts", json=STP_CRED).raise_for_status()
        yield client


@pytest.fixture(scope="module")
def psp_client() -> Iterator[PspClient]:
    """What the connectors send through, as the worker's own (connectors.psp_client)."""
    client = new_client(httpx.Timeout(10))
    yield client
    client.close()


@pytest.fixture
def paymaxis(sandbox_url: str, psp_client: PspClient) -> PaymaxisConnector:
    return PaymaxisConnector(base_url=f"{sandbox_url}/paymaxis", client=psp_client)


@pytest.fixture
def sticpay(sandbox_url: str, psp_client: PspClient) -> SticpayConnector:
    return SticpayConnector(base_url=f"{sandbox_url}/sticpay", client=psp_client)


def _deposit(receiver: WebhookCatcher, amount: str = "200.00") -> PaymentRequest:
    txn_id = f"txn_{uuid.uuid4().hex[:12]}"
    return PaymentRequest(
        txn_id=txn_id,
        action=Action.DEPOSIT,
        amount=Decimal(amount),
        currency="USD",
        payload={"body": {"order": {"id": "o1"}}},
        return_url=f"{receiver.url}/return/{txn_id}",
        webhook_url=f"{receiver.url}/hooks/{txn_id}",
    )


def _approve(http: httpx.Client, payment_id: str, **paid: str) -> dict:
    answer = http.post(f"/_control/complete/{payment_id}", json={"decision": "approve", **paid})
    assert answer.status_code == 200, answer.text
    return answer.json()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (5, Decimal(5)),
        (Decimal("5.00"), Decimal("5.00")),
        ("5.00", Decimal("5.00")),
        (" 12.5 ", Decimal("12.5")),
        (True, None),
        (None, None),
        ("", None),
        ("five", None),
        ("NaN", None),
        ("Infinity", None),
        ("1e999999999", None),
        (5.0, None),  # a float never reaches here from our parsers; if it does, not trusted
    ],
)
def test_reported_amounts_are_exact_decimals_or_nothing(value, expected) -> None:
    assert reported_amount(value) == expected


def test_paymaxis_reports_the_amount_the_customer_paid(paymaxis, receiver, http):
    request = _deposit(receiver)
    accepted = paymaxis.initiate(PMX_CRED, request)
    assert (accepted.amount, accepted.currency) == (Decimal("200.00"), "USD")
    paid = _approve(http, accepted.psp_txn_id, amount="5.00")
    assert paid["changed"] is True

    (hook,) = receiver.wait_for(f"/hooks/{request.txn_id}")
    event = paymaxis.parse_webhook(PMX_CRED, hook["headers"], hook["body"])
    assert event.outcome is Outcome.COMPLETED and event.amount == Decimal("5.00")
    for psp_txn_id in (accepted.psp_txn_id, None):
        answer = paymaxis.inquire(PMX_CRED, request.txn_id, psp_txn_id)
        assert answer.outcome is Outcome.COMPLETED
        assert (answer.amount, answer.currency) == (Decimal("5.00"), "USD")


def test_sticpay_reports_the_amount_the_customer_paid(sticpay, receiver, http):
    request = _deposit(receiver)
    page = http.get(sticpay.initiate(STP_CRED, request).navigation.value)
    payment_id = re.search(r"/sticpay/pay/(stp_[0-9a-f]+)", page.text).group(1)
    _approve(http, payment_id, amount="150", currency="EUR")

    (hook,) = receiver.wait_for(f"/hooks/{request.txn_id}")
    event = sticpay.parse_webhook(STP_CRED, hook["headers"], hook["body"])
    assert (event.amount, event.currency) == (Decimal("150.00"), "EUR")
    answer = sticpay.inquire(STP_CRED, request.txn_id, None)
    assert answer.outcome is Outcome.COMPLETED
    assert (answer.amount, answer.currency) == (Decimal("150.00"), "EUR")


def test_sandbox_refuses_an_unusable_paid_amount(paymaxis, receiver, http):
    request = _deposit(receiver)
    accepted = paymaxis.initiate(PMX_CRED, request)
    for paid in ({"amount": "-1"}, {"amount": "1.234"}, {"amount": "5", "currency": "XXX"}):
        answer = http.post(
            f"/_control/complete/{accepted.psp_txn_id}", json={"decision": "approve", **paid}
        )
        assert answer.status_code == 400, (paid, answer.text)
    assert paymaxis.inquire(PMX_CRED, request.txn_id, accepted.psp_txn_id).psp_state == "CHECKOUT"


def test_paymaxis_cancel_closes_the_checkout_page(paymaxis, receiver, http):
    assert isinstance(paymaxis, Cancellable)
    request = _deposit(receiver)
    accepted = paymaxis.initiate(PMX_CRED, request)
    cancelled = paymaxis.cancel(PMX_CRED, request.txn_id, accepted.psp_txn_id)
    assert cancelled.outcome is Outcome.FAILED and cancelled.psp_state == "CANCELLED"
    assert [e.method for e in cancelled.exchanges] == ["POST"]

    page = http.get(accepted.navigation.value)
    assert "Approve" not in page.text  # no buttons on a closed page
    http.post(accepted.navigation.value, data={"decision": "approve"})
    assert _approve(http, accepted.psp_txn_id)["changed"] is False
    status = paymaxis.inquire(PMX_CRED, request.txn_id, accepted.psp_txn_id)
    assert status.outcome is Outcome.FAILED and status.psp_state == "CANCELLED"
    again = paymaxis.cancel(PMX_CRED, request.txn_id, accepted.psp_txn_id)
    assert again.outcome is Outcome.FAILED  # cancelling twice is harmless


def test_paymaxis_cancel_after_payment_reports_the_payment(paymaxis, receiver, http):
    request = _deposit(receiver)
    accepted = paymaxis.initiate(PMX_CRED, request)
    _approve(http, accepted.psp_txn_id)
    answer = paymaxis.cancel(PMX_CRED, request.txn_id, accepted.psp_txn_id)
    assert answer.outcome is Outcome.COMPLETED and answer.amount == Decimal("200.00")
    assert [e.status_code for e in answer.exchanges] == [409, 200]


def test_paymaxis_cancel_during_an_outage_is_unknown(paymaxis, receiver, http):
    request = _deposit(receiver)
    accepted = paymaxis.initiate(PMX_CRED, request)
    http.put("/_control", json={"fail": "5xx"})
    try:
        answer = paymaxis.cancel(PMX_CRED, request.txn_id, accepted.psp_txn_id)
    finally:
        http.put("/_control", json={"fail": "none"})
    assert answer.outcome is Outcome.UNKNOWN


def test_sticpay_has_no_cancel(sticpay):
    # Sticpay's API has no way to close an order's page: expiry cannot cancel it there.
    assert not isinstance(sticpay, Cancellable)
