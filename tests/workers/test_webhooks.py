"""A stored PSP webhook is handled once, by the rules of workers.webhook_rules, as a set of
one here: applied with its transition, held when it names other money, ignored when it is
not the account's, parked when it keeps failing."""

from __future__ import annotations

import pytest

from connxt.settings import get_settings
from state_machine import Status
from storage import inbox
from storage.db import session_scope
from storage.inbox import Claimed
from storage.models import InboxMessage, Transaction
from tests.support.rollback import Ledger
from workers.webhook_rules import IGNORED, Loaded, judge
from workers.webhooks import apply_held

pytestmark = pytest.mark.usefixtures("rolled_back")


def process_held(inbox_id: int, txn_id: str) -> str:
    """One stored webhook whose transaction's lock is held (none is taken here)."""
    return apply_held([{"inbox_id": inbox_id, "txn_id": txn_id}])[inbox_id]


def stored(inbox_id: int) -> InboxMessage:
    with session_scope() as session:
        return session.get(InboxMessage, inbox_id)


def test_a_verified_completion_settles_once_and_is_recorded_with_it():
    ledger = Ledger.open()
    txn_id = ledger.deposit(Status.PG_ACCEPTED)
    inbox_id = ledger.webhook(txn_id, "COMPLETED")
    assert process_held(inbox_id, txn_id) == "SUCCESS"
    assert Ledger.status(txn_id) is Status.SUCCESS
    row = stored(inbox_id)
    assert row.result == "SUCCESS" and row.processed_at is not None and row.attempts == 1
    # Another delivery of the same message finds it handled: nothing more happens.
    assert process_held(inbox_id, txn_id) == "done"
    assert stored(inbox_id).attempts == 1


def test_a_completion_for_other_money_is_held_not_settled():
    ledger = Ledger.open()
    txn_id = ledger.deposit(Status.PG_ACCEPTED, amount="10.00")
    inbox_id = ledger.webhook(txn_id, "COMPLETED", amount="5.00")
    assert process_held(inbox_id, txn_id) == "amount_mismatch"
    with session_scope() as session:
        txn = session.get(Transaction, txn_id)
        assert txn.status is Status.PG_ACCEPTED and txn.review_reason == "amount_mismatch"


def test_a_webhook_naming_another_transaction_is_ignored():
    ledger, other = Ledger.open(), Ledger.open()
    ours, theirs = ledger.deposit(Status.PG_ACCEPTED), other.deposit(Status.PG_ACCEPTED)
    # Stored for our transaction, but the body names another account's payment.
    inbox_id = ledger.webhook(ours, "COMPLETED")
    with session_scope() as session:
        session.get(InboxMessage, inbox_id).txn_id = theirs
    assert process_held(inbox_id, theirs) == "ignored"
    assert stored(inbox_id).result == IGNORED
    assert Ledger.status(theirs) is Status.PG_ACCEPTED and Ledger.status(ours) is Status.PG_ACCEPTED


def test_a_webhook_out_of_attempts_is_parked_without_being_applied(monkeypatch):
    monkeypatch.setattr(get_settings(), "task_max_attempts", 2)
    ledger = Ledger.open()
    txn_id = ledger.deposit(Status.PG_ACCEPTED)
    inbox_id = ledger.webhook(txn_id, "COMPLETED")
    for _ in range(2):  # two attempts that ended before recording anything (killed)
        with session_scope() as session:
            assert inbox.claim_many(session, [inbox_id])[inbox_id].attempts <= 2
    assert process_held(inbox_id, txn_id) == "parked"
    row = stored(inbox_id)
    assert row.parked_at is not None and row.result == "parked after 2 attempts"
    assert Ledger.status(txn_id) is Status.PG_ACCEPTED


def test_a_webhook_whose_psp_account_is_gone_is_parked_on_every_path():
    # Pure: the rules over what was loaded, as every entry point runs them.
    claimed = Claimed("psp_gone", {}, b"{}", 1, "txn_x", None)
    verdict = judge(Loaded(7, claimed, None), max_attempts=5)
    assert (verdict.outcome, verdict.parked) == ("parked", True)
    assert verdict.result == "parked: no PSP account psp_gone" and verdict.decided is None
