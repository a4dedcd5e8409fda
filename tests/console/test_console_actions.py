"""The console's actions and its other pages against the running stack: each action does
what the CLI or the API would, through the outbox, and leaves an event naming who did it."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import func, select, update

from storage.db import session_scope
from storage.models import InboxMessage, Notification, Transaction
from tests.support.console import (
    OPERATOR,
    OPERATOR_TOKEN,
    act,
    csrf_of,
    notification_ids,
    paid_deposit,
    signed_in,
)
from tests.support.flows import customer_decides
from tests.support.merchant import deposit, history, pay, transaction
from tests.support.stack import wait_until

# The console's pages and actions: the broker under its worker changes none of it.
pytestmark = [pytest.mark.integration, pytest.mark.any_broker]


def flash_after(client: httpx.Client, answer: httpx.Response) -> str:
    """The message the page after an action shows."""
    assert answer.status_code == 303, answer.text
    page = client.get(answer.headers["location"]).text
    found = re.search(r'<p class="flash" id="flash">([^<]*)</p>', page)
    assert found, "no message after the action"
    return found.group(1)


def not_looked_at_for_an_hour(txn_id: str) -> None:
    """Push the transaction's next scheduled look an hour away: whatever asks the PSP in
    the next seconds, it is not the reconciliation schedule."""
    with session_scope() as session:
        session.execute(
            update(Transaction)
            .where(Transaction.id == txn_id)
            .values(next_inquiry_at=datetime.now(UTC) + timedelta(hours=1))
        )


def test_resolving_a_review_from_the_review_list(api, stack, console_url, merchant):
    txn_id = deposit(api, merchant.headers, merchant.flow_target, merchant.psp)
    pay(stack, txn_id, amount="5.00")  # 200 USD asked
    wait_until(lambda: transaction(api, merchant.headers, txn_id)["review"], what="held")

    # The tenant sees what waits, but deciding about money is an operator's act.
    tenant = signed_in(console_url, merchant.issued.token, name="Ada")
    listed = tenant.get("/transactions", params={"review": "1"}).text
    assert f'href="/transactions/{txn_id}"' in listed and "amount_mismatch" in listed
    page = tenant.get(f"/transactions/{txn_id}").text
    assert 'id="review"' in page and "5.00" in page
    assert 'id="resolve"' not in page and 'id="reconcile"' not in page
    confirm = tenant.get(f"/transactions/{txn_id}/confirm/resolve")
    assert confirm.status_code == 404
    form = tenant.get(f"/transactions/{txn_id}/confirm/reconcile")  # any page with a token
    forced = tenant.post(
        f"/transactions/{txn_id}/actions/resolve",
        data={"csrf": csrf_of(form.text), "confirmed": "yes", "decision": "SUCCESS", "note": "x"},
    )
    assert flash_after(tenant, forced) == "Not done: only an operator resolves a review"
    assert transaction(api, merchant.headers, txn_id)["status"] == "PG_ACCEPTED"

    operator = signed_in(console_url, OPERATOR_TOKEN)
    page = operator.get(f"/transactions/{txn_id}").text
    assert 'id="resolve"' in page and 'id="reconcile"' not in page  # held: only a decision
    refused = act(operator, txn_id, "resolve", decision="FAILED", note="  ")
    assert (
        flash_after(operator, refused) == "Not done: say why: the reason is kept with the decision"
    )
    done = act(operator, txn_id, "resolve", decision="FAILED", note="paid 5 of 200: refunded")
    assert flash_after(operator, done) == "Review resolved: PG_ACCEPTED → FAILED"
    final = transaction(api, merchant.headers, txn_id)
    assert final["status"] == "FAILED" and final["capturedAmount"] is None
    assert final["review"]["resolvedBy"] == f"operator {OPERATOR}"
    (decision,) = [e for e in history(api, merchant.headers, txn_id) if e["source"] == "operator"]
    assert decision["reason"] == (
        f"amount_mismatch resolved FAILED: paid 5 of 200: refunded (by operator {OPERATOR})"
    )
    again = act(operator, txn_id, "resolve", decision="SUCCESS", note="changed my mind")
    assert flash_after(operator, again).startswith("Not done: not held for review")
    assert transaction(api, merchant.headers, txn_id)["status"] == "FAILED"


def test_an_operator_resolving_success_records_what_the_psp_paid(api, stack, console_url, merchant):
    txn_id = deposit(api, merchant.headers, merchant.flow_target, merchant.psp)
    pay(stack, txn_id, amount="5.00")  # 200 USD asked
    wait_until(lambda: transaction(api, merchant.headers, txn_id)["review"], what="held")
    operator = signed_in(console_url, OPERATOR_TOKEN)
    done = act(operator, txn_id, "resolve", decision="SUCCESS", note="the customer paid 5")
    assert flash_after(operator, done) == "Review resolved: PG_ACCEPTED → SUCCESS"
    final = transaction(api, merchant.headers, txn_id)
    assert (final["capturedAmount"], final["capturedCurrency"]) == (5.0, "USD")
    page = signed_in(console_url, merchant.issued.token).get(f"/transactions/{txn_id}").text
    assert re.search(r'id="captured"[^>]*>5\.00 USD<', page), "the captured amount is not shown"


def test_reconcile_now_asks_the_psp_about_an_accepted_deposit(api, stack, console_url, merchant):
    # The PSP's webhook will be late: only an inquiry can learn that the customer paid.
    httpx.put(f"{stack.sandbox_url}/_control", json={"webhook_delay_ms": 600_000})
    txn_id = deposit(api, merchant.headers, merchant.flow_target, merchant.psp)
    pay(stack, txn_id)
    not_looked_at_for_an_hour(txn_id)
    client = signed_in(console_url, OPERATOR_TOKEN)
    done = act(client, txn_id, "reconcile")
    assert flash_after(client, done) == "The PSP is being asked"
    wait_until(
        lambda: transaction(api, merchant.headers, txn_id)["status"] == "SUCCESS",
        what="SUCCESS from the inquiry",
    )
    steps = history(api, merchant.headers, txn_id)
    assert ("PG_ACCEPTED", "SUCCESS", "inquiry") in [
        (e["fromStatus"], e["toStatus"], e["source"]) for e in steps
    ]
    assert "reconcile now: the PSP is asked (by operator ops-alice)" in [e["reason"] for e in steps]
    finished = act(client, txn_id, "reconcile")
    assert (
        flash_after(client, finished) == "Not done: SUCCESS is final: there is nothing to reconcile"
    )


def test_reconcile_now_resumes_an_initiation_the_psp_never_answered(
    api, stack, console_url, merchant
):
    httpx.put(f"{stack.sandbox_url}/_control", json={"fail": "5xx"})
    txn_id = deposit(api, merchant.headers, merchant.flow_target, merchant.psp)
    wait_until(
        lambda: transaction(api, merchant.headers, txn_id)["status"] == "INITIATED",
        what="INITIATED",
    )
    httpx.put(f"{stack.sandbox_url}/_control", json={"fail": "none"})
    not_looked_at_for_an_hour(txn_id)
    client = signed_in(console_url, merchant.issued.token)
    done = act(client, txn_id, "reconcile")
    assert flash_after(client, done) == "Due for the next reconciliation pass"
    # The sweep decides: tries remain, so it initiates again (finding no payment, making one).
    wait_until(
        lambda: transaction(api, merchant.headers, txn_id)["status"] == "PG_ACCEPTED",
        what="PG_ACCEPTED",
    )


def test_a_parked_webhook_is_listed_and_replayed(api, stack, console_url, merchant):
    txn_id = paid_deposit(api, stack, merchant)
    with session_scope() as session:
        inbox_id = session.scalar(select(InboxMessage.id).where(InboxMessage.txn_id == txn_id))
        # What a notification that kept failing ends as (workers.callbacks parks it).
        session.execute(
            update(InboxMessage)
            .where(InboxMessage.id == inbox_id)
            .values(parked_at=func.now(), processed_at=None, result="parked after 9 attempts")
        )
    client = signed_in(console_url, merchant.issued.token)
    parked = client.get("/parked").text
    assert f"/transactions/{txn_id}/confirm/replay?target={inbox_id}" in parked
    assert "parked after 9 attempts" in parked
    done = act(client, txn_id, "replay", str(inbox_id))
    assert flash_after(client, done) == f"Webhook #{inbox_id} is being processed again"

    def processed() -> bool:
        with session_scope() as session:
            message = session.get(InboxMessage, inbox_id)
            return message.parked_at is None and message.processed_at is not None

    wait_until(processed, what="the webhook processed again")
    assert f"?target={inbox_id}" not in client.get("/parked").text
    steps = [(e["fromStatus"], e["toStatus"]) for e in history(api, merchant.headers, txn_id)]
    assert steps.count(("PG_ACCEPTED", "SUCCESS")) == 1  # applied again: nothing moved twice


def test_a_notification_that_ran_out_of_retries_is_parked_then_sent_again(
    api, stack, console_url, merchant
):
    # The merchant's endpoint answers 5xx until every retry is spent (about 12 s here).
    httpx.put(f"{stack.sandbox_url}/_control", json={"merchant_fail": True})
    txn_id = deposit(api, merchant.headers, merchant.flow_target, merchant.psp)
    pay(stack, txn_id)

    def given_up() -> str | None:
        with session_scope() as session:
            return session.scalar(
                select(Notification.id).where(
                    Notification.txn_id == txn_id, Notification.status == "FAILED"
                )
            )

    notification_id = wait_until(given_up, timeout=90, interval=0.5, what="retries spent")
    httpx.put(f"{stack.sandbox_url}/_control", json={"merchant_fail": False})
    client = signed_in(console_url, merchant.issued.token)
    parked = client.get("/parked").text
    assert f"/transactions/{txn_id}/confirm/retry?target={notification_id}" in parked
    assert notification_ids(client.get(f"/transactions/{txn_id}").text) == [notification_id]
    done = act(client, txn_id, "retry", notification_id)
    assert flash_after(client, done) == f"Notification {notification_id} is being sent again"

    def delivered() -> bool:
        with session_scope() as session:
            return session.get(Notification, notification_id).status == "DELIVERED"

    wait_until(delivered, what="delivered")
    assert notification_id not in client.get("/parked").text


def test_psp_health_counts_the_last_hours_deposits(api, stack, console_url, merchant):
    paid_deposit(api, stack, merchant)
    declined = deposit(api, merchant.headers, merchant.flow_target, merchant.psp)
    customer_decides(stack.sandbox_url, declined, "decline")
    wait_until(
        lambda: transaction(api, merchant.headers, declined)["status"] == "FAILED", what="FAILED"
    )
    client = signed_in(console_url, merchant.issued.token)
    page = client.get("/psps").text
    row = re.search(r"<tr>\s*<td>Main</td>(.*?)</tr>", page, re.S)
    assert row, page
    cells = re.findall(r'<td class="num[^"]*">([^<]*)</td>', row.group(1))
    created, succeeded, failed, rejected, rate, calls, p50, p99, errors, refusals = cells
    assert (created, succeeded, failed, rejected, rate) == ("2", "1", "1", "0", "50.0%")
    assert int(calls) >= 2 and p50.endswith(" ms") and p99.endswith(" ms")
    assert (errors, refusals) == ("0", "0")
    operator = signed_in(console_url, OPERATOR_TOKEN).get("/psps").text
    assert '<td class="mono">psp.paymaxis</td>' in operator


def test_the_list_filters(api, stack, console_url, merchant):
    paid = paid_deposit(api, stack, merchant, order_id="order-filter-paid")
    waiting = deposit(api, merchant.headers, merchant.flow_target, merchant.psp)
    client = signed_in(console_url, merchant.issued.token)

    def listed(**params: str) -> set[str]:
        page = client.get("/transactions", params=params)
        assert page.status_code == 200, page.text
        return set(re.findall(r'<a href="/transactions/(txn_[A-Za-z0-9]+)"', page.text))

    assert listed() == {paid, waiting}
    assert listed(status="SUCCESS") == {paid}
    assert listed(status="PG_ACCEPTED") == {waiting}
    assert listed(q="order-filter-paid") == {paid}
    assert listed(q=waiting) == {waiting}
    assert listed(action="DEPOSIT", psp=merchant.psp["id"]) == {paid, waiting}
    assert listed(action="WITHDRAW") == set()
    today = datetime.now(UTC).date()
    assert listed(**{"from": str(today), "to": str(today)}) == {paid, waiting}
    assert listed(**{"to": str(today - timedelta(days=1))}) == set()
    assert listed(review="1") == set()
    # What the console cannot read is ignored, not an error.
    assert listed(status="BOGUS", **{"from": "not a date"}) == {paid, waiting}
    assert listed(to="9999-12-31") == {paid, waiting}
