"""Reviews kept once and counted once, however often the PSP repeats itself, and the
operator's decision refused where there is nothing to decide (in-process, real database)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from prometheus_client import REGISTRY

from state_machine import Event, Source, Status
from storage.db import session_scope
from storage.reviews import Reported
from storage.transactions import NothingToResolve, apply_event, resolve_review
from tests.support.flows import V2, paymaxis_psp, wait_status
from tests.support.merchant import deposit, reasons, review_list, transaction

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


def _completed(txn_id: str, source: Source, amount: str, currency: str = "USD"):
    with session_scope() as session:
        return apply_event(
            session,
            txn_id,
            Event.PSP_COMPLETED,
            source,
            "PSP state COMPLETED",
            reported=Reported(Decimal(amount), currency, "COMPLETED"),
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
        resolve_review(session, txn_id, Status.SUCCESS, "nothing to decide")
    with session_scope() as session, pytest.raises(LookupError):
        resolve_review(session, "txn_unknown", Status.SUCCESS, "no such")
    _completed(txn_id, Source.WEBHOOK, "20000", "USD")
    with session_scope() as session, pytest.raises(ValueError):
        resolve_review(session, txn_id, Status.REJECTED, "not an operator's outcome")
    with session_scope() as session:
        resolve_review(session, txn_id, Status.FAILED, "charged 100 times the price")
    failed = transaction(api, headers, txn_id)
    assert failed["status"] == "FAILED"
    assert failed["error"] == {"code": "AMOUNT_MISMATCH", "message": "charged 100 times the price"}
    assert failed["review"]["note"] == "charged 100 times the price"
    assert txn_id not in [item["txnId"] for item in review_list(api, headers)]
    with session_scope() as session, pytest.raises(NothingToResolve):
        resolve_review(session, txn_id, Status.SUCCESS, "decided twice")
