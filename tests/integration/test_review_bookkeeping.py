"""Reviews kept once and counted once, however often the PSP repeats itself, and the
operator's decision refused where there is nothing to decide (in-process, real database)."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest
from prometheus_client import REGISTRY

from state_machine import Event, Source, Status
from storage.db import session_scope
from storage.decisions import NothingToResolve, apply_event, resolve_review
from storage.reviews import Reported
from tests.support.flows import V2, paymaxis_psp, wait_status
from tests.support.merchant import (
    deposit,
    notifications_for,
    notified_tenant,
    reasons,
    review_list,
    transaction,
)
from tests.support.stack import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def paymaxis(api, stack, tenant):
    _, headers = tenant
    flow_target, psp, _ = paymaxis_psp(api, stack.sandbox_url, headers)
    return headers, flow_target, psp


def _reviews(reason: str) -> float:
    return sum(
        sample.value
        for metric in REGISTRY.collect()
        if metric.name == "connxt_reviews"
        for sample in metric.samples
        if sample.name == "connxt_reviews_total" and sample.labels.get("reason") == reason
    )


def _kinds(api, headers, txn_id: str) -> list[str]:
    answer = api.get(f"{V2}/transactions/{txn_id}/notifications", headers=headers)
    return sorted(n["eventType"] for n in answer.json()["data"]["items"])


def _completed(
    txn_id: str, source: Source, amount: str, currency: str = "USD", payment: str | None = None
):
    reported = Reported(Decimal(amount), currency, "COMPLETED")
    if payment is not None:  # the PSP's own id of the payment it reports
        reported = dataclasses.replace(reported, psp_txn_id=payment)
    with session_scope() as session:
        return apply_event(
            session,
            txn_id,
            Event.PSP_COMPLETED,
            source,
            "PSP state COMPLETED",
            reported=reported,
        )


def test_a_late_success_is_recorded_and_counted_once(api, paymaxis):
    headers, flow_target, psp = paymaxis
    txn_id = deposit(api, headers, flow_target, psp)
    wait_status(api, headers, txn_id, {"PG_ACCEPTED"})
    before = _reviews("late_success")
    with session_scope() as session:
        apply_event(session, txn_id, Event.EXPIRE, Source.EXPIRY, "expired")
    for source in (Source.WEBHOOK, Source.WEBHOOK, Source.INQUIRY):
        applied = _completed(txn_id, source, "200.00")
        assert applied.decision.status is Status.FAILED and applied.decision.noop
    assert _reviews("late_success") == before + 1
    assert reasons(api, headers, txn_id).count("late_success") == 1
    assert _kinds(api, headers, txn_id) == ["transaction.failed", "transaction.late_success"]
    assert transaction(api, headers, txn_id)["status"] == "FAILED"


def test_an_amount_mismatch_is_held_and_counted_once(api, paymaxis):
    headers, flow_target, psp = paymaxis
    txn_id = deposit(api, headers, flow_target, psp)
    wait_status(api, headers, txn_id, {"PG_ACCEPTED"})
    before = _reviews("amount_mismatch")
    for amount in ("5.00", "5", "200.00"):  # held: not even the right amount settles it now
        assert _completed(txn_id, Source.INQUIRY, amount).decision.status is Status.PG_ACCEPTED
    assert _reviews("amount_mismatch") == before + 1
    assert reasons(api, headers, txn_id).count("amount_mismatch") == 1
    assert _kinds(api, headers, txn_id) == ["transaction.review"]
    not_held = api.get(f"{V2}/transactions", headers=headers, params={"review": "false"})
    assert txn_id not in [item["txnId"] for item in not_held.json()["data"]["items"]]


def test_the_operator_decides_only_what_is_held(api, paymaxis):
    headers, flow_target, psp = paymaxis
    txn_id = deposit(api, headers, flow_target, psp)
    wait_status(api, headers, txn_id, {"PG_ACCEPTED"})
    with session_scope() as session, pytest.raises(NothingToResolve):
        resolve_review(session, txn_id, Status.SUCCESS, "nothing to decide", by="ops")
    with session_scope() as session, pytest.raises(LookupError):
        resolve_review(session, "txn_unknown", Status.SUCCESS, "no such", by="ops")
    _completed(txn_id, Source.WEBHOOK, "20000", "USD")
    with session_scope() as session, pytest.raises(ValueError):
        resolve_review(session, txn_id, Status.REJECTED, "not an operator's outcome", by="ops")
    with session_scope() as session:
        resolve_review(session, txn_id, Status.FAILED, "charged 100 times the price", by="ops")
    failed = transaction(api, headers, txn_id)
    assert failed["status"] == "FAILED"
    assert failed["error"] == {"code": "AMOUNT_MISMATCH", "message": "charged 100 times the price"}
    assert failed["review"]["note"] == "charged 100 times the price"
    assert txn_id not in [item["txnId"] for item in review_list(api, headers)]
    with session_scope() as session, pytest.raises(NothingToResolve):
        resolve_review(session, txn_id, Status.SUCCESS, "decided twice", by="ops")


def _resolve(txn_id: str, decided: Status, note: str) -> None:
    with session_scope() as session:
        resolve_review(session, txn_id, decided, note, by="ops-carol")


def test_each_new_late_success_is_a_review_of_its_own_with_its_own_notice(api, stack, make_tenant):
    """A second late success after the first was decided is held and told again; a repeat
    of a report already reviewed is not (the PSP's payment, state and money make a report)."""
    _, headers = notified_tenant(stack, make_tenant)
    flow_target, psp, _ = paymaxis_psp(api, stack.sandbox_url, headers)
    txn_id = deposit(api, headers, flow_target, psp)
    wait_status(api, headers, txn_id, {"PG_ACCEPTED"})
    before = _reviews("late_success")
    with session_scope() as session:
        apply_event(session, txn_id, Event.EXPIRE, Source.EXPIRY, "expired")

    _completed(txn_id, Source.WEBHOOK, "200.00")
    _resolve(txn_id, Status.FAILED, "refunded at the PSP")
    assert transaction(api, headers, txn_id)["review"]["resolvedAt"]
    _completed(txn_id, Source.INQUIRY, "200")  # the first report again: nothing new
    assert transaction(api, headers, txn_id)["review"]["resolvedAt"]

    _completed(txn_id, Source.WEBHOOK, "150.00")  # money moved again: a new review
    again = transaction(api, headers, txn_id)
    assert again["status"] == "FAILED"
    assert again["review"]["pspAmount"] == "150.00" and again["review"]["resolvedAt"] is None
    assert txn_id in [item["txnId"] for item in review_list(api, headers)]
    assert _kinds(api, headers, txn_id) == ["transaction.failed"] + ["transaction.late_success"] * 2
    assert reasons(api, headers, txn_id).count("late_success") == 2
    assert _reviews("late_success") == before + 2

    # Another payment of the same money while that one waits: a review of its own too,
    # decided after it; repeats of either add nothing.
    _completed(txn_id, Source.WEBHOOK, "150.00", payment="pay_second")
    _completed(txn_id, Source.INQUIRY, "150.00", payment="pay_second")
    _completed(txn_id, Source.WEBHOOK, "150.00")
    assert _kinds(api, headers, txn_id).count("transaction.late_success") == 3
    _resolve(txn_id, Status.FAILED, "refunded too")
    waiting = transaction(api, headers, txn_id)["review"]
    assert waiting["resolvedAt"] is None and waiting["pspAmount"] == "150.00"
    _resolve(txn_id, Status.SUCCESS, "kept: goods shipped")
    assert txn_id not in [item["txnId"] for item in review_list(api, headers)]
    with session_scope() as session, pytest.raises(NothingToResolve):
        resolve_review(session, txn_id, Status.SUCCESS, "nothing left", by="ops")

    # Each notice reached the merchant once, each telling the review it is about.
    def told():
        received = notifications_for(stack, txn_id, "transaction.late_success")
        return received if len(received) >= 3 else None

    received = wait_until(told, timeout=20, what="three late success notices")
    assert len({n["webhookId"] for n in received}) == 3
    assert sorted(n["body"]["data"]["review"]["pspAmount"] for n in received) == [
        "150.00",
        "150.00",
        "200.00",
    ]
