"""A reconciliation run over time: late settlement, reruns, broken reports, a run killed
with SIGKILL midway, two runs of one day started at once, another PSP's day and format.

The runs that must be real processes (killed, concurrent) are `connxt recon run` commands
against the sandbox in this process (CONNXT_SANDBOX_URL points them at it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import text

from storage.db import session_scope
from storage.recon import differences, matching, runs
from tests.support.flows import create_psp, stored_deposit, target
from tests.support.recon import Books, at, seed_synthetic, today, yesterday
from tests.support.statistics import stale_statistics
from workers import recon

# Reads the outbox and runs the sweeps itself.
pytestmark = pytest.mark.usefixtures("background_held")

ROOT = Path(__file__).resolve().parents[2]


def state_of(run_id: str) -> dict:
    with session_scope() as session:
        row = (
            session.execute(
                text(
                    "SELECT status, error, attempts, started_at, finished_at, lines,"
                    " (SELECT count(*) FROM recon_lines WHERE run_id = :id) AS stored_lines,"
                    " (SELECT count(*) FROM recon_txn_results WHERE run_id = :id) AS stored_txns,"
                    " (SELECT count(*) FROM recon_differences WHERE run_id = :id) AS stored_diffs,"
                    " (SELECT count(*) FROM recon_adjustments WHERE run_id = :id) AS stored_adjs"
                    " FROM recon_runs WHERE id = :id"
                ),
                {"id": run_id},
            )
            .mappings()
            .one()
        )
    return dict(row)


def day_result(books: Books, day) -> str | None:
    with session_scope() as session:
        return matching.current_run(session, books.psp_id, day)


def test_pending_turns_missing_when_the_window_passes(books, window):
    txn_id, payment_id = books.settled_txn(yesterday(), "60.00")
    books.inject("drop", payment_id)
    window(30)
    first = books.reconcile(yesterday())
    assert books.txn_classes(first.run_id) == {txn_id: "pending"}
    window(0)
    second = books.reconcile(yesterday())
    assert books.txn_classes(second.run_id) == {txn_id: "missing_at_psp"}
    with session_scope() as session:
        [before] = differences.of_run(session, None, first.run_id)
        [after] = differences.of_run(session, None, second.run_id)
    # The same difference, seen since the first run, still open.
    assert before.subject == after.subject == f"txn:{txn_id}"
    assert after.first_seen_at == before.first_seen_at
    assert (after.klass, after.state) == ("missing_at_psp", "open")


def test_pending_turns_matched_when_the_line_arrives_a_day_late(books, window):
    txn_id, payment_id = books.settled_txn(yesterday(), "70.00")
    books.inject("delay", payment_id)  # settles today instead
    window(30)
    first = books.reconcile(yesterday())
    assert books.txn_classes(first.run_id) == {txn_id: "pending"}
    todays = books.reconcile(today())
    # In today's report, for a transaction of yesterday: matched all the same.
    assert books.line_classes(todays.run_id) == {"matched": [txn_id]}
    again = books.reconcile(yesterday())
    assert books.txn_classes(again.run_id) == {txn_id: "matched"}
    assert again.summary["differences"]["pending"] == 0
    with session_scope() as session:
        [pending] = differences.of_run(session, None, first.run_id)
        settled_day = session.execute(
            text("SELECT settled_day FROM recon_txn_results WHERE run_id = :r"),
            {"r": again.run_id},
        ).scalar()
    assert pending.state == "cleared"  # a later run matched it
    assert settled_day == today()


def test_a_payment_settled_again_on_a_later_day_is_a_duplicate(books, window):
    window(30)
    before = yesterday() - timedelta(days=1)
    txn_id, _first = books.settled_txn(before, "25.00")
    books.pay(txn_id, "25.00", settled=at(yesterday(), 9))  # a second payment of it, paid too
    earlier = books.reconcile(before)
    assert books.line_classes(earlier.run_id) == {"matched": [txn_id]}
    later = books.reconcile(yesterday())
    assert books.line_classes(later.run_id) == {"duplicate": [txn_id]}
    assert books.txn_classes(later.run_id) == {txn_id: "duplicate"}
    # Rerun, the earlier day keeps its match: the duplicate is the later settlement.
    again = books.reconcile(before)
    assert books.line_classes(again.run_id) == {"matched": [txn_id]}


def test_a_rerun_replaces_the_days_result_and_counts_once(books, window):
    window(30)
    books.settled_txn(yesterday(), "10.00")
    short, short_paid = books.settled_txn(yesterday(), "20.00", hour=11)
    books.inject("amount", short_paid)
    first = books.reconcile(yesterday())
    second = books.reconcile(yesterday())
    assert (state_of(first.run_id)["status"], state_of(second.run_id)["status"]) == (
        "SUPERSEDED",
        "COMPLETED",
    )
    assert day_result(books, yesterday()) == second.run_id
    # One result per day: the replaced run's lines are gone, its summary stays.
    assert state_of(first.run_id)["stored_lines"] == 0 and state_of(first.run_id)["lines"] == 2
    assert state_of(second.run_id)["stored_lines"] == 2
    keep = {"lines", "matched", "differences", "totals"}
    assert {k: first.summary[k] for k in keep} == {k: second.summary[k] for k in keep}
    with session_scope() as session:
        total = session.execute(
            text(
                "SELECT count(*) FROM recon_lines l JOIN recon_days d"
                " ON d.current_run_id = l.run_id WHERE d.psp_id = :p"
            ),
            {"p": books.psp_id},
        ).scalar()
    assert total == 2


@pytest.mark.parametrize(
    "broken, error", [("malformed", "line 1 is unreadable"), ("truncated", "not JSON")]
)
def test_a_broken_report_fails_the_run_and_writes_nothing(books, window, broken, error):
    window(30)
    books.settled_txn(yesterday(), "10.00")
    good = books.reconcile(yesterday())
    books.inject(broken)
    bad = books.reconcile(yesterday())
    assert bad.status == "FAILED" and error in bad.error
    found = state_of(bad.run_id)
    assert found["status"] == "FAILED" and error in found["error"]
    assert (found["stored_lines"], found["stored_txns"], found["stored_diffs"]) == (0, 0, 0)
    assert found["stored_adjs"] == 0
    # The day keeps the result it had.
    assert day_result(books, yesterday()) == good.run_id
    assert state_of(good.run_id)["status"] == "COMPLETED"


def test_a_sticpay_day_in_seoul(client, tenant, sandbox, monkeypatch, window):
    app, url = sandbox
    books = Books(client, tenant[1], app, url, "Sticpay", monkeypatch)
    window(30)
    seoul_today = datetime.now(ZoneInfo("Asia/Seoul")).date()
    txn_id = "txn_" + os.urandom(8).hex()
    payment_id = books.pay(txn_id, "1234.50", kind="WITHDRAW")
    books.txn("SUCCESS", datetime.now(UTC), "1234.50", payment_id, "WITHDRAW", txn_id)
    outcome = books.reconcile(seoul_today)
    assert outcome.status == "COMPLETED", outcome
    assert books.line_classes(outcome.run_id) == {"matched": [txn_id]}
    assert outcome.summary["totals"]["USD"] == {
        "count": 1,
        "gross": "1234.50",
        "fee": "18.52",
        "net": "-1253.02",
    }


def recon_command(books: Books, day, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "CONNXT_SANDBOX_URL": books.url, "CONNXT_LOG_LEVEL": "WARNING"}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "commands.cli",
            "recon",
            "run",
            "--psp",
            books.psp_id,
            "--date",
            day.isoformat(),
            "--json",
            *extra,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def runs_of(books: Books) -> list[runs.Run]:
    with session_scope() as session:
        return runs.list_runs(session, None, psp_id=books.psp_id)


def stale_statistics_for_a_new_account(client, headers) -> None:
    """Statistics of the transactions that know nothing of the test's account
    (tests.support.statistics), made with another account's rows."""
    flow_target = target(client, headers, "Paymaxis")
    other = create_psp(client, headers, flow_target, {"apiKey": "pk_other"})
    stale_statistics(stored_deposit(client, headers, other, flow_target))


def test_a_run_killed_midway_is_redone_and_leaves_nothing_half_written(
    books, window, client, tenant
):
    """Also: matched in seconds though the statistics know nothing of the account
    (``stale_statistics_for_a_new_account``). With the run's lines and the account's
    transactions both taken for a few rows, the planner walked the transactions once per
    line: the redo took 37–41 s instead of 3 s."""
    window(30)
    stale_statistics_for_a_new_account(client, tenant[1])
    lines = 40_000  # four of the report's pages
    seed_synthetic(books, yesterday(), lines, seed=11, prefix="txn_kill")
    # Each page answers after 0.6 s: a second into the run it is still fetching (the lines
    # it has are copied, none stored), whatever this host's speed.
    httpx.put(f"{books.url}/_control", json={"psp": "paymaxis", "delay_ms": 600}).raise_for_status()
    command = recon_command(books, yesterday())
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        started = [r for r in runs_of(books) if r.status == "RUNNING"]
        if started:
            break
        assert command.poll() is None, command.communicate()
        time.sleep(0.05)
    [run] = started
    time.sleep(1.0)  # well into the report: pages fetched, lines copied
    assert command.poll() is None, "the run ended before it could be killed"
    command.send_signal(signal.SIGKILL)
    command.wait(10)

    killed = state_of(run.id)
    assert killed["status"] == "RUNNING"  # as its process left it
    assert (killed["stored_lines"], killed["stored_txns"], killed["stored_diffs"]) == (0, 0, 0)
    with session_scope() as session:
        assert matching.lock_day(session, books.psp_id, yesterday())  # the fence went with it
        assert run.id in runs.stale_runs(session, 0)
    # What the schedule's sweep sends again, a worker runs to the end.
    began = time.monotonic()
    outcome = recon.execute(run.id)
    took = time.monotonic() - began
    assert outcome.status == "COMPLETED"
    assert took < 20, f"the redo took {took:.1f} s"
    done = state_of(run.id)
    assert (done["status"], done["stored_lines"], done["attempts"]) == ("COMPLETED", lines, 2)
    assert outcome.summary["matched"] == lines and not any(outcome.summary["differences"].values())


def test_two_runs_of_one_day_started_at_once_never_interleave(books, window):
    window(30)
    lines = 60_000
    seed_synthetic(books, yesterday(), lines, seed=12, prefix="txn_both")
    first, second = recon_command(books, yesterday()), recon_command(books, yesterday())
    outputs = [command.communicate(timeout=240) for command in (first, second)]
    assert [command.returncode for command in (first, second)] == [0, 0], outputs
    found = sorted(runs_of(books), key=lambda r: r.started_at)
    assert [r.status for r in found] == ["SUPERSEDED", "COMPLETED"]
    # One after the other: the second started only when the first had committed.
    assert found[0].finished_at <= found[1].started_at
    assert day_result(books, yesterday()) == found[1].id
    assert state_of(found[1].id)["stored_lines"] == lines
    assert state_of(found[0].id)["stored_lines"] == 0
