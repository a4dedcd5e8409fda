"""Settlement reconciliation puts every line and every transaction in exactly one class,
against the sandbox's own books of what its payments did (workers.recon, storage.recon).

Each case is a day of one PSP account: Connxt's transactions written as the case needs
them, the sandbox's payments settled when the case says, the report falsified through its
controls, then a run of that day as `connxt recon run` makes one.
"""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import text

from storage.db import session_scope
from storage.recon import differences
from tests.support.recon import at, window_between, yesterday


def test_every_class_in_one_day(books, window):
    day = yesterday()
    matched, paid = books.settled_txn(day, "100.00")
    short, short_paid = books.settled_txn(day, "50.00", hour=11)
    books.inject("amount", short_paid)
    twice, twice_paid = books.settled_txn(day, "20.00", hour=12)
    books.inject("duplicate", twice_paid)
    failed, _ = books.settled_txn(day, "30.00", hour=13, status="FAILED")
    still_open, _ = books.settled_txn(day, "40.00", hour=14, status="PG_ACCEPTED")
    old = at(day, 0, 0, 10)
    young = at(day, 23, 59, 50)
    dropped, dropped_paid = books.settled_txn(day, "60.00", hour=15)
    books.inject("drop", dropped_paid)
    with session_scope() as session:
        session.execute(
            text("UPDATE transactions SET created_at = :t WHERE id = :id"),
            {"t": old, "id": dropped},
        )
    late = books.txn("SUCCESS", young, "70.00")
    unknown = books.inject("unknown", settled=at(day, 16))["paymentId"]
    books.adjust("chargeback", paid, settled=at(day, 17))
    books.adjust("fee_adjustment", amount="2.50", settled=at(day, 18))
    payout, _ = books.settled_txn(day, "80.00", kind="WITHDRAW", hour=19)
    window(window_between(young, old))

    outcome = books.reconcile(day)

    assert outcome.status == "COMPLETED", outcome
    lines = books.line_classes(outcome.run_id)
    assert sorted(lines["matched"]) == sorted([matched, twice, payout, matched, "fee_adjustment"])
    assert lines["amount_mismatch"] == [short]
    assert lines["duplicate"] == [twice]
    assert sorted(lines["status_mismatch"]) == sorted([failed, still_open])
    assert lines["missing_at_connxt"] == [unknown]
    assert "pending" not in lines and "missing_at_psp" not in lines

    txns = books.txn_classes(outcome.run_id)
    assert txns == {
        matched: "matched",
        short: "amount_mismatch",
        twice: "duplicate",
        failed: "status_mismatch",
        still_open: "status_mismatch",
        payout: "matched",
        dropped: "missing_at_psp",
        late: "pending",
    }
    summary = outcome.summary
    assert summary["matched"] == 5
    assert summary["differences"] == {
        "amount_mismatch": 1,
        "pending": 1,
        "missing_at_psp": 1,
        "missing_at_connxt": 1,
        "status_mismatch": 2,
        "duplicate": 1,
    }
    assert summary["adjustments"]["chargeback"]["USD"] == {
        "count": 1,
        "gross": "100.00",
        "fee": "15.00",
        "net": "-115.00",
    }
    assert summary["adjustments"]["fee_adjustment"]["USD"]["net"] == "-2.50"
    assert summary["matchedShare"] == round(5 / 12, 4)  # 5 matched lines, 7 differences
    # Gross, fee and net of everything the PSP settled that day, per currency.
    total = summary["totals"]["USD"]
    assert total["count"] == summary["lines"] == 10
    # 100 + 49 + 20 twice + 30 + 40 + 10 (unknown) + 100 (chargeback) + 0 (fee) + 80
    assert total["gross"] == "449.00"
    assert Decimal(total["net"]) == sum(
        Decimal(v["net"])
        for by_currency in summary["totalsByClass"].values()
        for v in by_currency.values()
    )


def test_automatic_fixes_inquiry_and_reviews(books, window):
    day = yesterday()
    open_txn, open_paid = books.settled_txn(day, "40.00", status="PG_ACCEPTED")
    failed, _ = books.settled_txn(day, "30.00", hour=11, status="FAILED")
    short, short_paid = books.settled_txn(day, "50.00", hour=12)
    books.inject("amount", short_paid)
    window(5)

    outcome = books.reconcile(day)

    with session_scope() as session:
        rows = session.execute(
            text("SELECT id, status, review_reason FROM transactions WHERE id = ANY(:ids)"),
            {"ids": [open_txn, failed, short]},
        ).all()
        state = {row.id: (row.status, row.review_reason) for row in rows}
        sources = (
            session.execute(
                text(
                    "SELECT DISTINCT source FROM transaction_events"
                    " WHERE txn_id = :id AND to_status = 'SUCCESS'"
                ),
                {"id": open_txn},
            )
            .scalars()
            .all()
        )
        found = differences.of_run(session, None, outcome.run_id)
    # The PSP, asked, says the open one is paid: SUCCESS through the state machine.
    assert state[open_txn] == ("SUCCESS", None)
    assert sources == ["reconciliation"]
    # Money the merchant was not told of, or other money: held for an operator.
    assert state[failed] == ("FAILED", "late_success")
    assert state[short] == ("SUCCESS", "amount_mismatch")
    by_txn = {d.txn_id: d for d in found}
    assert (by_txn[open_txn].action, by_txn[open_txn].state) == ("inquiry", "resolved")
    assert by_txn[open_txn].resolved_by == "reconciliation"
    assert (by_txn[failed].action, by_txn[failed].state) == ("review", "open")
    assert (by_txn[short].action, by_txn[short].state) == ("review", "open")
    assert by_txn[short].theirs["gross"] == "49.00" and by_txn[short].ours["amount"].startswith(
        "50.00"
    )
