"""`connxt recon`: a run's summary as one JSON object, its differences as CSV, a difference
resolved with a note (commands/recon.py, called as the command line calls it)."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest

from tests.support.cli import cli
from tests.support.recon import yesterday


@pytest.fixture(autouse=True)
def wide_window(window) -> None:
    window(30)


def connxt(*args: str) -> tuple[int, str, str]:
    """Exit code, standard output and error, as from a shell."""
    done = cli(*args)
    return done.returncode, done.stdout, done.stderr


def test_run_json_export_and_resolve(books):
    books.settled_txn(yesterday(), "10.00")
    short, short_paid = books.settled_txn(yesterday(), "20.00", hour=11)
    books.inject("amount", short_paid)
    unknown = books.inject(
        "unknown", settled=datetime.combine(yesterday(), datetime.min.time(), UTC)
    )

    code, out, _ = connxt(
        "recon", "run", "--psp", books.psp_id, "--date", str(yesterday()), "--json"
    )
    assert code == 0
    [line] = out.strip().splitlines()  # one JSON object, nothing else
    summary = json.loads(line)
    assert summary["status"] == "COMPLETED" and summary["runId"].startswith("rcn_")
    assert summary["matched"] == 1
    assert summary["differences"] == {
        "amount_mismatch": 1,
        "pending": 0,
        "missing_at_psp": 0,
        "missing_at_connxt": 1,
        "status_mismatch": 0,
        "duplicate": 0,
    }

    code, out, _ = connxt("recon", "export", summary["runId"])
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    by_class = {row["class"]: row for row in rows}
    assert set(by_class) == {"amount_mismatch", "missing_at_connxt"}
    mismatch = by_class["amount_mismatch"]
    assert (mismatch["txnId"], mismatch["ourAmount"], mismatch["gross"], mismatch["state"]) == (
        short,
        "20.00",
        "19.00",
        "open",
    )
    assert by_class["missing_at_connxt"]["pspPaymentId"] == unknown["paymentId"]
    assert by_class["missing_at_connxt"]["txnId"] == ""

    difference = by_class["missing_at_connxt"]["differenceId"]
    code, out, _ = connxt(
        "recon", "resolve", difference, "--note", "PSP test payment", "--by", "ada"
    )
    assert code == 0 and "resolved by ada" in out
    code, _, err = connxt("recon", "resolve", difference, "--note", "again")
    assert code != 0 and "resolved already" in err
    code, out, _ = connxt("recon", "export", summary["runId"])
    resolved = next(r for r in csv.DictReader(io.StringIO(out)) if r["differenceId"] == difference)
    assert (resolved["state"], resolved["note"], resolved["resolvedBy"]) == (
        "resolved",
        "PSP test payment",
        "ada",
    )

    code, out, _ = connxt("recon", "list", "--psp", books.psp_id)
    assert summary["runId"] in out and "COMPLETED" in out


def test_refusals_say_why(books):
    code, _, err = connxt("recon", "run", "--psp", books.psp_id, "--date", "yesterday")
    assert code != 0 and "YYYY-MM-DD" in err
    code, _, err = connxt("recon", "run", "--psp", "psp_nobody", "--date", str(yesterday()))
    assert code != 0 and "no PSP account psp_nobody" in err
    future = (datetime.now(UTC) + timedelta(days=2)).date()
    code, _, err = connxt("recon", "run", "--psp", books.psp_id, "--date", str(future))
    assert code != 0 and "has not begun" in err
    books.settled_txn(yesterday(), "10.00")
    books.inject("malformed")
    code, out, _ = connxt(
        "recon", "run", "--psp", books.psp_id, "--date", str(yesterday()), "--json"
    )
    failed = json.loads(out)
    assert code == 1 and failed["status"] == "FAILED" and "unreadable" in failed["error"]
    code, _, err = connxt("recon", "export", "rcn_nothing")
    assert code != 0 and "no run rcn_nothing" in err
