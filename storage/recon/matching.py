"""One run's report, stored in bulk and matched against the transactions in one SQL pass.

In the run's database transaction, under its day's lock (``lock_day``):

1. ``stage``: the lines as they arrive, ``COPY``'d into the run's lines (never held in
   memory; nothing of them kept if the report breaks off: the transaction rolls back);
2. ``match``: one statement (storage.recon.match_sql) finds each line's transaction by our
   reference, or by the PSP's payment id where the reference names none of that account's,
   whatever day the transaction was made; gives every line and every transaction of the day
   (our SUCCESSes made that day in the PSP's time zone, and every one a line names) exactly
   one class (storage.recon.vocabulary); corrects the lines that did not match as staged,
   writes transaction results, adjustments and differences; and answers the aggregates of
   the summary;
3. ``complete`` (storage.recon.results): the run's summary, the day's result replaced.

The transaction's own table is read once per line, by primary key; nothing of the
transactions is written: fees live in the reconciliation's tables.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from connectors.base import SettlementLine
from storage.recon.match_sql import MATCH

# How far back a line the PSP wrote without our reference is looked for by its payment id
# (transactions have no index on the PSP's id: a bounded range of the tenant's index
# instead of the whole table).
PAYMENT_ID_LOOKBACK = timedelta(days=31)
# How many later days' reports are looked in for a SUCCESS this day's report lacks, and
# how many earlier ones for a line settling a transaction again.
LATER_DAYS = EARLIER_DAYS = timedelta(days=31)
# Sorts, hashes and the lines kept between the statement's parts stay in memory on the
# server for a day of a million lines (what the bench measures), instead of temp files.
WORK_MEM = "256MB"

# The report goes straight into the run's lines, each first taken for a match by our
# reference (``txn_id`` = ``reference``, class ``matched``); the match statement corrects the
# few that are not. So a million lines are written once, while they stream in (PostgreSQL
# takes them on its own core as the connector parses the next), not staged and copied.
COPY = (
    "COPY recon_lines (run_id, line_no, psp_payment_id, reference, type, gross, fee, net,"
    " currency, settled_at, txn_id, class) FROM STDIN"
)
COLUMN_TYPES = [
    "text", "int4", "text", "text", "text", "numeric", "numeric", "numeric", "text",
    "timestamptz", "text", "text",
]  # fmt: skip
TXN_ID_LENGTH = 40  # recon_lines.txn_id: a longer reference cannot be one of ours


@dataclass(frozen=True)
class Plan:
    """What matching one run needs: the run, its account and day, the window."""

    run_id: str
    brand_id: str
    environment_id: str
    psp_id: str
    day: date
    day_start: datetime  # the PSP's day, as an aware interval
    day_end: datetime
    pending_after: datetime  # a SUCCESS made after this is still inside the window
    previous_run_id: str | None  # the day's result until this run completes


def lock_day(session: Session, psp_id: str, day: date) -> bool:
    """The day's fence for this database transaction: False when another run of the same
    account and day holds it (both would write the day's result). Released at commit or
    rollback, and by PostgreSQL when the process holding it dies."""
    return bool(
        session.execute(
            text("SELECT pg_try_advisory_xact_lock(hashtextextended(:key, 0))"),
            {"key": f"recon:{psp_id}:{day.isoformat()}"},
        ).scalar()
    )


def current_run(session: Session, psp_id: str, day: date) -> str | None:
    return session.execute(
        text("SELECT current_run_id FROM recon_days WHERE psp_id = :psp AND day = :day"),
        {"psp": psp_id, "day": day},
    ).scalar()


def stage(session: Session, run_id: str, lines: Iterable[SettlementLine]) -> int:
    """COPY the lines into the run's lines as they come (see ``COPY``); how many."""
    session.execute(text(f"SET LOCAL work_mem = '{WORK_MEM}'"))
    # JIT compiling the matching statement cost more than running it (measured: 6.4 s of
    # a 7.5 s match of 30,000 lines): the plan is a few hash joins and sorts.
    session.execute(text("SET LOCAL jit = off"))
    driver = session.connection().connection.driver_connection
    assert driver is not None  # a live connection of the session's pool: psycopg's own
    cursor = driver.cursor()
    count = 0
    with cursor.copy(COPY) as copy:
        # Typed once, not per value: a third less CPU per line (measured at 200,000).
        copy.set_types(COLUMN_TYPES)
        write = copy.write_row
        for count, line in enumerate(lines, 1):
            reference = line.reference
            write(
                (
                    run_id,
                    count,
                    line.psp_payment_id,
                    reference,
                    line.type.value,
                    line.gross,
                    line.fee,
                    line.net,
                    line.currency,
                    line.settled_at,
                    reference if reference and len(reference) <= TXN_ID_LENGTH else None,
                    "matched",
                )
            )
    return count


def match(session: Session, plan: Plan) -> dict[str, Any]:
    """Match the staged lines (``stage``) and write the run's results; the aggregates the
    summary is made of: ``lines`` (count and sums by class, type and currency),
    ``transactions`` and ``differences`` (counts by class)."""
    row = session.connection().exec_driver_sql(MATCH, params(plan)).mappings().one()
    return dict(row)


def params(plan: Plan) -> dict[str, Any]:
    return {
        "run": plan.run_id,
        "brand": plan.brand_id,
        "env": plan.environment_id,
        "psp": plan.psp_id,
        "day": plan.day,
        "day_start": plan.day_start,
        "day_end": plan.day_end,
        "pending_after": plan.pending_after,
        "payment_id_from": plan.day_start - PAYMENT_ID_LOOKBACK,
        "last_later_day": plan.day + LATER_DAYS,
        "first_earlier_day": plan.day - EARLIER_DAYS,
        "previous": plan.previous_run_id,
    }
