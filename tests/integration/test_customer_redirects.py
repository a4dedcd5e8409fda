"""Where the customer's browser lands after the PSP: never on the merchant's success page
before the outcome is known (hardening #9, item 4)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from api_gateway.transactions.examples import reference_payload
from tests.support.flows import V2, customer_decides, paymaxis_psp, wait_status
from tests.support.merchant import deposit

pytestmark = pytest.mark.integration

SUCCESS_URL = "https://shop.example/thanks"
FAILURE_URL = "https://shop.example/sorry"
RETURN_URL = "https://shop.example/back"


@pytest.fixture
def paymaxis(api, stack, tenant):
    _, headers = tenant
    flow_target, psp, _ = paymaxis_psp(api, stack.sandbox_url, headers)
    return headers, flow_target, psp


def back_from_psp(api, txn_id: str, method: str = "GET") -> str:
    """The customer's browser returning to our redirect endpoint; where it is sent."""
    answer = api.request(method, f"{V2}/external/redirects/{txn_id}", follow_redirects=False)
    assert answer.status_code == 303, answer.text
    return answer.headers["location"]


def result_page(stack, txn_id: str) -> str:
    return f"{stack.api_url}{V2}/external/result/{txn_id}"


def page_of(location: str) -> str:
    parts = urlsplit(location)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def test_open_deposit_goes_to_our_page_then_on_to_the_success_page(api, stack, paymaxis):
    headers, flow_target, psp = paymaxis
    payload = reference_payload(successUrl=SUCCESS_URL, failureUrl=FAILURE_URL)
    txn_id = deposit(api, headers, flow_target, psp, payload=payload)
    assert wait_status(api, headers, txn_id, {"PG_ACCEPTED"})["status"] == "PG_ACCEPTED"

    for method in ("GET", "POST"):
        landing = back_from_psp(api, txn_id, method)
        assert page_of(landing) != SUCCESS_URL, "sent to the success page before the outcome"
        assert landing == result_page(stack, txn_id)
    waiting = api.get(landing, follow_redirects=False)
    assert waiting.status_code == 200
    assert "processing" in waiting.text.lower()
    assert 'http-equiv="refresh"' in waiting.text  # it moves on by itself

    customer_decides(stack.sandbox_url, txn_id)
    wait_status(api, headers, txn_id, {"SUCCESS"})
    moved_on = api.get(landing, follow_redirects=False)
    assert moved_on.status_code == 303
    assert page_of(moved_on.headers["location"]) == SUCCESS_URL
    assert parse_qs(urlsplit(moved_on.headers["location"]).query)["txnId"] == [txn_id]
    assert page_of(back_from_psp(api, txn_id)) == SUCCESS_URL


def test_our_page_moves_on_to_the_failure_page(api, stack, paymaxis):
    headers, flow_target, psp = paymaxis
    payload = reference_payload(successUrl=SUCCESS_URL, failureUrl=FAILURE_URL)
    txn_id = deposit(api, headers, flow_target, psp, payload=payload)
    wait_status(api, headers, txn_id, {"PG_ACCEPTED"})
    landing = back_from_psp(api, txn_id)
    assert landing == result_page(stack, txn_id), "sent to a merchant page before the outcome"
    customer_decides(stack.sandbox_url, txn_id, "decline")
    wait_status(api, headers, txn_id, {"FAILED"})
    moved_on = api.get(landing, follow_redirects=False)
    assert moved_on.status_code == 303
    assert page_of(moved_on.headers["location"]) == FAILURE_URL


def test_open_deposit_with_a_return_url_goes_there(api, stack, paymaxis):
    headers, flow_target, psp = paymaxis
    payload = reference_payload(returnUrl=RETURN_URL, successUrl=SUCCESS_URL)
    txn_id = deposit(api, headers, flow_target, psp, payload=payload)
    wait_status(api, headers, txn_id, {"PG_ACCEPTED"})
    assert page_of(back_from_psp(api, txn_id)) == RETURN_URL


def test_without_merchant_pages_our_page_shows_the_outcome(api, stack, paymaxis):
    headers, flow_target, psp = paymaxis
    txn_id = deposit(api, headers, flow_target, psp)
    wait_status(api, headers, txn_id, {"PG_ACCEPTED"})
    landing = back_from_psp(api, txn_id)
    assert landing == result_page(stack, txn_id)
    customer_decides(stack.sandbox_url, txn_id)
    wait_status(api, headers, txn_id, {"SUCCESS"})
    shown = api.get(landing, follow_redirects=False)
    assert shown.status_code == 200  # nowhere else to go: no loop back to itself
    assert "Payment received" in shown.text and "refresh" not in shown.text
