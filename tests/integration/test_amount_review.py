"""A PSP that took another amount or currency than we asked for: never SUCCESS, held for an
operator (hardening #9, item 2), on every path that settles a transaction."""

from __future__ import annotations

import getpass
import json
import secrets
import time
from decimal import Decimal

import httpx
import pytest

from connectors.base import Outcome, PspResult
from state_machine import Source
from tests.support.cli import cli
from tests.support.flows import V2, create_psp, paymaxis_psp, target, transaction_body
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
from workers.psp_calls import record_psp_answer

pytestmark = pytest.mark.integration

TERMINAL = {"SUCCESS", "FAILED", "REJECTED"}


@pytest.fixture
def merchant(stack, make_tenant):
    return notified_tenant(stack, make_tenant)


@pytest.fixture
def paymaxis(api, stack, merchant):
    _, headers = merchant
    flow_target, psp, _ = paymaxis_psp(api, stack.sandbox_url, headers)
    return headers, flow_target, psp


def held_or_settled(api, headers, txn_id: str) -> dict:
    """The transaction once it is held for review or has settled, whichever comes first."""

    def decided():
        data = transaction(api, headers, txn_id)
        return data if data["status"] in TERMINAL or data.get("review") else None

    return wait_until(decided, timeout=20, what=f"{txn_id} held or settled")


def test_webhook_for_less_money_holds_the_deposit_until_an_operator_decides(api, stack, paymaxis):
    headers, flow_target, psp = paymaxis
    txn_id = deposit(api, headers, flow_target, psp)  # 200 USD
    assert pay(stack, txn_id, amount="5.00")["payment"]["amount"] == 5

    held = held_or_settled(api, headers, txn_id)
    assert held["status"] == "PG_ACCEPTED", "a payment for 5.00 of 200.00 settled as SUCCESS"
    review = held["review"]
    assert review["reason"] == "amount_mismatch"
    assert (review["pspAmount"], review["pspCurrency"]) == ("5.00", "USD")
    assert review["resolvedAt"] is None
    mismatch = [e for e in history(api, headers, txn_id) if e["reason"] == "amount_mismatch"]
    assert [(e["fromStatus"], e["toStatus"], e["source"]) for e in mismatch] == [
        ("PG_ACCEPTED", "PG_ACCEPTED", "webhook")
    ]
    (listed,) = [item for item in review_list(api, headers) if item["txnId"] == txn_id]
    assert listed["review"]["reason"] == "amount_mismatch" and listed["status"] == "PG_ACCEPTED"
    (told,) = wait_until(
        lambda: notifications_for(stack, txn_id, "transaction.review"), what="review notice"
    )
    assert told["verified"] is True
    assert told["body"]["data"]["review"]["pspAmount"] == "5.00"

    # Nothing settles it behind the operator's back: not the customer coming back (which
    # asks the PSP), not reconciliation, not the PSP's notification processed again.
    api.get(f"{V2}/external/redirects/{txn_id}", follow_redirects=False)
    reconciled = cli("reconcile", "--txn", txn_id)
    assert reconciled.returncode == 0, reconciled.stderr
    (inbox_id,) = [w["id"] for w in _webhooks(api, headers, txn_id)]
    assert cli("webhooks", "replay", str(inbox_id)).returncode == 0
    time.sleep(2)
    assert transaction(api, headers, txn_id)["status"] == "PG_ACCEPTED"
    assert reasons(api, headers, txn_id).count("amount_mismatch") == 1
    assert len(notifications_for(stack, txn_id, "transaction.review")) == 1

    decided = cli("txn", "resolve", txn_id, "--status", "FAILED", "--reason", "paid 5 of 200")
    assert decided.returncode == 0, decided.stdout + decided.stderr
    final = transaction(api, headers, txn_id)
    assert final["status"] == "FAILED"
    assert final["review"]["resolution"] == "FAILED" and final["review"]["resolvedAt"]
    last = history(api, headers, txn_id)[-1]
    assert (last["fromStatus"], last["toStatus"], last["source"]) == (
        "PG_ACCEPTED",
        "FAILED",
        "operator",
    )
    assert "paid 5 of 200" in last["reason"]
    assert txn_id not in [item["txnId"] for item in review_list(api, headers)]
    wait_until(lambda: notifications_for(stack, txn_id, "transaction.failed"), what="outcome")
    again = cli("txn", "resolve", txn_id, "--status", "SUCCESS", "--reason", "twice")
    assert again.returncode != 0 and transaction(api, headers, txn_id)["status"] == "FAILED"


def test_inquiry_for_less_money_holds_the_deposit(api, stack, paymaxis):
    headers, flow_target, psp = paymaxis
    # The PSP's notification is late, so the customer's redirect makes us ask the PSP first:
    # its status answer is what must be compared.
    httpx.put(f"{stack.sandbox_url}/_control", json={"webhook_delay_ms": 30_000})
    txn_id = deposit(api, headers, flow_target, psp)
    pay(stack, txn_id, amount="199.99")
    api.get(f"{V2}/external/redirects/{txn_id}", follow_redirects=False)

    held = held_or_settled(api, headers, txn_id)
    assert held["status"] == "PG_ACCEPTED", "a payment for 199.99 of 200.00 settled as SUCCESS"
    assert held["review"]["pspAmount"] == "199.99"
    (event,) = [e for e in history(api, headers, txn_id) if e["reason"] == "amount_mismatch"]
    assert event["source"] == "inquiry"

    decided = cli("txn", "resolve", txn_id, "--status", "SUCCESS", "--reason", "rest paid")
    assert decided.returncode == 0, decided.stdout + decided.stderr
    final = transaction(api, headers, txn_id)
    assert final["status"] == "SUCCESS" and final["review"]["resolution"] == "SUCCESS"
    assert history(api, headers, txn_id)[-1]["source"] == "operator"
    wait_until(lambda: notifications_for(stack, txn_id, "transaction.success"), what="outcome")


def test_sticpay_callback_in_another_currency_holds_the_deposit(api, stack, merchant):
    _, headers = merchant
    credential = {"merchantEmail": f"m{secrets.token_hex(4)}@shop.example", "apiKey": "stk-r"}
    httpx.put(f"{stack.sandbox_url}/_control/accounts", json=credential)
    flow_target = target(api, headers, "Sticpay")
    psp = create_psp(api, headers, flow_target, credential, name="Sticpay")
    txn_id = deposit(api, headers, flow_target, psp)
    navigation = transaction(api, headers, txn_id)["navigation"]["value"]
    assert httpx.get(navigation).status_code == 200  # the customer opens the page
    pay(stack, txn_id, amount="200", currency="EUR")

    held = held_or_settled(api, headers, txn_id)
    assert held["status"] == "PG_ACCEPTED", "200 EUR for a 200 USD deposit settled as SUCCESS"
    assert (held["review"]["pspAmount"], held["review"]["pspCurrency"]) == ("200.00", "EUR")


def test_psp_answers_are_compared_before_they_settle(api, stack, paymaxis):
    """What initiation and inquiry both apply: same amount settles, anything else holds."""
    headers, flow_target, psp = paymaxis
    ids = [deposit(api, headers, flow_target, psp) for _ in range(4)]
    psp_ids = [payment_of(stack, txn_id)["id"] for txn_id in ids]
    answers = [
        (Decimal("200"), "usd"),  # our 200.00 USD, written differently: the same money
        (Decimal("200.01"), "USD"),
        (Decimal("200.00"), "EUR"),
        (None, None),  # a success that does not say how much cannot be checked
    ]
    for txn_id, psp_txn_id, (amount, currency) in zip(ids, psp_ids, answers, strict=True):
        result = PspResult(
            Outcome.COMPLETED,
            psp_txn_id=psp_txn_id,
            psp_state="COMPLETED",
            amount=amount,
            currency=currency,
        )
        record_psp_answer(txn_id, result, Source.PSP_RESPONSE)
    statuses = [transaction(api, headers, txn_id) for txn_id in ids]
    assert [s["status"] for s in statuses] == ["SUCCESS"] + ["PG_ACCEPTED"] * 3
    assert statuses[0]["review"] is None
    assert all(s["review"]["reason"] == "amount_mismatch" for s in statuses[1:])
    assert statuses[3]["review"]["pspAmount"] is None
    listed = {item["txnId"] for item in review_list(api, headers)}
    assert listed == set(ids[1:])


def _webhooks(api, headers, txn_id: str) -> list[dict]:
    answer = api.get(f"{V2}/transactions/{txn_id}/webhooks", headers=headers)
    return answer.json()["data"]["items"]


def money(api, headers, path: str, **params) -> dict:
    """An answer's `data` with its JSON numbers read as Decimal, digit for digit."""
    answer = api.get(f"{V2}{path}", headers=headers, params=params)
    assert answer.status_code == 200, answer.text
    return json.loads(answer.text, parse_float=Decimal)["data"]


def refund(api, headers, flow_target, psp, parent: str, amount: str):
    body = transaction_body(psp, flow_target, action="REFUND", amount=amount, parentTxnId=parent)
    return api.post(f"{V2}/transactions", headers=headers, json=body)


def test_a_short_payment_resolved_success_captures_what_the_psp_paid(api, stack, paymaxis):
    """200.00 asked, 5.00 paid, resolved SUCCESS: 5.00 is what the merchant is told was
    captured, what the API and the CLI show, and what can be refunded."""
    headers, flow_target, psp = paymaxis
    txn_id = deposit(api, headers, flow_target, psp)  # 200 USD
    pay(stack, txn_id, amount="5.00")
    held = held_or_settled(api, headers, txn_id)
    assert held["status"] == "PG_ACCEPTED" and held["capturedAmount"] is None

    # The PSP said how much: the operator cannot record another amount.
    other = cli("txn", "resolve", txn_id, "--status", "SUCCESS", "--reason", "x", "--amount", "200")
    assert other.returncode != 0 and "5.00 USD" in other.stdout + other.stderr
    assert transaction(api, headers, txn_id)["status"] == "PG_ACCEPTED"

    decided = cli(
        "txn", "resolve", txn_id, "--status", "SUCCESS", "--reason", "customer paid 5",
        "--operator", "ops-bob",
    )  # fmt: skip
    assert decided.returncode == 0, decided.stdout + decided.stderr
    final = money(api, headers, f"/transactions/{txn_id}")
    assert final["status"] == "SUCCESS"
    assert (final["txnAmount"], final["txnCurrency"]) == (Decimal("200.00"), "USD")
    assert (final["capturedAmount"], final["capturedCurrency"]) == (Decimal("5.00"), "USD")
    assert final["review"]["resolvedBy"] == "ops-bob"
    assert final["review"]["note"] == "customer paid 5"
    assert "ops-bob" in history(api, headers, txn_id)[-1]["reason"]
    (listed,) = [
        t for t in money(api, headers, "/transactions", status="SUCCESS")["items"]
        if t["txnId"] == txn_id
    ]  # fmt: skip
    assert listed["capturedAmount"] == Decimal("5.00")

    (told,) = wait_until(
        lambda: notifications_for(stack, txn_id, "transaction.success"), what="outcome"
    )
    assert told["verified"] is True
    sent = json.loads(told["raw"], parse_float=Decimal)["data"]
    assert (sent["capturedAmount"], sent["capturedCurrency"]) == (Decimal("5.00"), "USD")
    assert sent["txnAmount"] == Decimal("200.00")

    shown = cli("txn", "show", txn_id)
    assert shown.returncode == 0, shown.stderr
    assert '"capturedAmount": 5.00' in shown.stdout and '"txnAmount": 200.00' in shown.stdout

    # Refunds are bounded by what was captured, not by what was asked.
    too_much = refund(api, headers, flow_target, psp, txn_id, "5.01")
    assert too_much.status_code == 422, too_much.text
    assert "5.00" in too_much.json()["errors"][0]["message"]
    assert refund(api, headers, flow_target, psp, txn_id, "5.00").status_code in (200, 202)
    assert refund(api, headers, flow_target, psp, txn_id, "0.01").status_code == 422


def test_a_success_that_named_no_amount_is_captured_as_the_operator_says(api, stack, paymaxis):
    headers, flow_target, psp = paymaxis
    txn_id = deposit(api, headers, flow_target, psp)
    result = PspResult(
        Outcome.COMPLETED, psp_txn_id=payment_of(stack, txn_id)["id"], psp_state="COMPLETED"
    )
    record_psp_answer(txn_id, result, Source.INQUIRY)
    assert transaction(api, headers, txn_id)["review"]["pspAmount"] is None

    unsaid = cli("txn", "resolve", txn_id, "--status", "SUCCESS", "--reason", "paid")
    assert unsaid.returncode != 0 and "--amount" in unsaid.stdout + unsaid.stderr
    assert transaction(api, headers, txn_id)["status"] == "PG_ACCEPTED"
    unreadable = cli(
        "txn", "resolve", txn_id, "--status", "SUCCESS", "--reason", "paid", "--amount", "1.001"
    )
    assert unreadable.returncode != 0 and transaction(api, headers, txn_id)["review"]

    decided = cli(
        "txn", "resolve", txn_id, "--status", "SUCCESS", "--reason", "bank statement",
        "--amount", "150",
    )  # fmt: skip
    assert decided.returncode == 0, decided.stdout + decided.stderr
    final = money(api, headers, f"/transactions/{txn_id}")
    assert final["status"] == "SUCCESS"
    assert (final["capturedAmount"], final["capturedCurrency"]) == (Decimal("150.00"), "USD")
    # Without --operator, the decision is the OS user's.
    assert final["review"]["resolvedBy"] == getpass.getuser()


def test_a_plain_success_captures_the_amount_asked(api, stack, paymaxis):
    headers, flow_target, psp = paymaxis
    txn_id = deposit(api, headers, flow_target, psp, amount="12.30")
    pay(stack, txn_id)
    wait_until(lambda: transaction(api, headers, txn_id)["status"] == "SUCCESS", what="SUCCESS")
    data = money(api, headers, f"/transactions/{txn_id}")
    assert (data["capturedAmount"], data["capturedCurrency"]) == (Decimal("12.30"), "USD")
    open_one = money(api, headers, f"/transactions/{deposit(api, headers, flow_target, psp)}")
    assert open_one["capturedAmount"] is None and open_one["capturedCurrency"] is None
