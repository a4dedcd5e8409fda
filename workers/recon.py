"""Settlement reconciliation (`connxt recon`): one run of a PSP account and day, start to end.

Not the status sweeps of workers.reconcile, which ask PSPs about open transactions:
this proves the closed ones against the PSP's books.

``execute(run_id)`` opens the run's database transaction, takes its day's lock there
(storage.recon.matching.lock_day: two runs of one account and day never interleave),
streams the connector's report into it (``COPY``, line by line as the PSP sends them),
matches it in one statement, and commits the result with the summary. A report that
cannot be read whole rolls everything back and fails the run with the reason; a process
that dies mid-run leaves nothing written but the run's RUNNING mark, and the schedule's
sweep runs it again (``schedule_due``).

After the commit, what can be fixed without a person is (``settle_automatically``): a
status mismatch of an open transaction is an inquiry, applied through the state machine
with source ``reconciliation``; money differences (settled for a failed transaction, or
for other money) go to the review flow of storage.reviews.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from connectors.base import ReportError, SettlementReports
from connxt.metrics import RECON_LINES, RECON_RUNS
from connxt.settings import get_settings
from state_machine import Review, Source, Status
from storage.db import new_session, session_scope
from storage.psp_context import find_psp_context
from storage.recon import differences, matching, results, runs, schedule
from storage.recon.vocabulary import UNFINISHED, Class, RunStatus, Trigger
from storage.reviews import Reported, open_review
from storage.transactions import get_in_scope
from workers.inquiry import inquire_transaction
from workers.locks import transaction_locks

log = structlog.get_logger()

OPEN = (Status.CREATED.value, Status.INITIATED.value, Status.PG_ACCEPTED.value)
# The most automatic fixes (inquiries, reviews) one run makes; the rest wait for a person.
MAX_AUTOMATIC = 1000


class RunBusy(Exception):
    """Another run of the same account and day holds the day's lock."""


@dataclass(frozen=True)
class Outcome:
    run_id: str
    status: str  # COMPLETED | FAILED | the run's status when there was nothing to do
    summary: dict[str, Any] | None = None
    error: str | None = None


def window_days(psp_id: str, target: str) -> float:
    """The PSP's settlement window: per account id, else per connector, else the default."""
    settings = get_settings()
    windows = settings.recon_settlement_windows
    return windows.get(psp_id, windows.get(target, settings.recon_settlement_window_days))


def day_bounds(zone: str, day: date) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(zone))
    return start, start + timedelta(days=1)


def execute(run_id: str, wait_seconds: float = 0) -> Outcome:
    """Run ``run_id`` if it is still to be run; ``wait_seconds``: how long to wait for the
    day's lock before RunBusy."""
    with session_scope() as session:
        run = runs.get_run(session, None, run_id)
        context = find_psp_context(session, run.psp_id) if run is not None else None
    if run is None or run.status not in UNFINISHED or context is None:
        return Outcome(run_id, run.status if run else "UNKNOWN")
    reports = context.connector
    target = reports.name  # the flow target's name
    if not isinstance(reports, SettlementReports):
        return _failed(run, f"{target} publishes no settlement reports Connxt can read", 0.0)
    day_start, day_end = day_bounds(reports.settlement_zone, run.day)
    session = new_session()
    started = time.perf_counter()
    try:
        _lock(session, run, wait_seconds)
        with session_scope() as marking:
            if runs.mark_running(marking, run_id) is None:
                return Outcome(run_id, "done elsewhere")
        started = time.perf_counter()  # the run's time, not the wait for another's
        plan = matching.Plan(
            run_id=run.id,
            brand_id=run.brand_id,
            environment_id=run.environment_id,
            psp_id=run.psp_id,
            day=run.day,
            day_start=day_start,
            day_end=day_end,
            pending_after=datetime.now(UTC) - timedelta(days=window_days(run.psp_id, target)),
            previous_run_id=matching.current_run(session, run.psp_id, run.day),
        )
        matching.stage(session, run.id, reports.settlement_lines(context.credential, run.day))
        staged = time.perf_counter()
        aggregates = matching.match(session, plan)
        summary = results.summarize(run, aggregates, (time.perf_counter() - started) * 1000)
        log.info(
            "recon.run_matched",
            run_id=run.id,
            fetch_and_copy_s=round(staged - started, 2),
            match_s=round(time.perf_counter() - staged, 2),
        )
        results.complete(session, plan, summary)
        if run.trigger == Trigger.SCHEDULE.value:
            _book_schedule(session, run, succeeded=True)
        session.commit()
    except ReportError as exc:
        session.rollback()
        return _failed(run, str(exc), time.perf_counter() - started)
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
    _count(run, summary, time.perf_counter() - started)
    settle_automatically(run_id)
    return Outcome(run_id, RunStatus.COMPLETED.value, summary)


def _lock(session: Any, run: runs.Run, wait_seconds: float) -> None:
    deadline = time.monotonic() + wait_seconds
    while not matching.lock_day(session, run.psp_id, run.day):
        if time.monotonic() >= deadline:
            session.rollback()
            raise RunBusy(f"another run of {run.psp_id} for {run.day} is in progress")
        time.sleep(0.5)


def _book_schedule(session: Any, run: runs.Run, succeeded: bool) -> None:
    settings = get_settings()
    schedule.after_scheduled_run(
        session, run.psp_id, run.day, succeeded, settings.recon_hour, settings.recon_lookback_days
    )


def _failed(run: runs.Run, error: str, seconds: float) -> Outcome:
    with session_scope() as session:
        runs.mark_failed(session, run.id, error)
        if run.trigger == Trigger.SCHEDULE.value:
            _book_schedule(session, run, succeeded=False)
    RECON_RUNS.labels(run.psp_name, "failed").observe(seconds)
    log.warning("recon.run_failed", run_id=run.id, psp_id=run.psp_id, day=str(run.day), error=error)
    return Outcome(run.id, RunStatus.FAILED.value, error=error)


def _count(run: runs.Run, summary: dict[str, Any], seconds: float) -> None:
    for klass, count in summary["linesByClass"].items():
        RECON_LINES.labels(klass).inc(count)
    RECON_RUNS.labels(run.psp_name, "completed").observe(seconds)
    log.info(
        "recon.run_completed",
        run_id=run.id,
        psp_id=run.psp_id,
        day=str(run.day),
        lines=summary["lines"],
        matched=summary["matched"],
        differences={k: v for k, v in summary["differences"].items() if v},
        seconds=round(seconds, 2),
    )


def settle_automatically(run_id: str) -> dict[str, int]:
    """What the run's differences let be fixed without a person; counts of what was done.

    An open transaction the PSP settled is asked about (an inquiry, source
    ``reconciliation``): the PSP's answer moves it through the state machine. Settled
    money for a FAILED or REJECTED transaction is a ``late_success`` review; settled
    other money for a SUCCESS an ``amount_mismatch`` review."""
    with session_scope() as session:
        found = differences.needing_action(session, run_id, MAX_AUTOMATIC)
    done = {"inquiry": 0, "review": 0}
    for item in found:
        if item["class"] == Class.STATUS_MISMATCH and item["status"] in OPEN:
            done["inquiry"] += _inquire(item)
        elif item["review_reason"] is None:
            done["review"] += _review(item)
    return done


def _inquire(item: dict[str, Any]) -> int:
    txn_id = item["txn_id"]
    with transaction_locks([txn_id]) as (held, _busy):
        if not held:
            return 0  # busy: another worker is on it; the next run finds what it did
        status = inquire_transaction(txn_id, Source.RECONCILIATION)
    with session_scope() as session:
        differences.record_action(session, item["id"], "inquiry")
    if status is Status.SUCCESS:
        try:
            with session_scope() as session:
                differences.resolve(
                    session, None, item["id"], "settled by an inquiry: SUCCESS", "reconciliation"
                )
        except differences.AlreadyResolved:
            pass  # an operator was quicker: their note stands
    return 1


def _review(item: dict[str, Any]) -> int:
    theirs = item["theirs"] or {}
    reported = Reported(
        amount=None if theirs.get("gross") is None else Decimal(theirs["gross"]),
        currency=theirs.get("currency"),
        psp_state="SETTLED",
    )
    reason = Review.AMOUNT_MISMATCH if item["class"] == Class.AMOUNT_MISMATCH else None
    if item["class"] == Class.STATUS_MISMATCH and item["status"] in (
        Status.FAILED.value,
        Status.REJECTED.value,
    ):
        reason = Review.LATE_SUCCESS
    if reason is None:
        return 0
    with session_scope() as session:
        txn = get_in_scope(session, None, item["txn_id"])
        if txn is None:
            return 0
        # One review per distinct report (storage.reviews): a later run's repeat of this
        # difference opens none.
        if not open_review(session, txn, reason, Source.RECONCILIATION, reported):
            return 0  # moved meanwhile: the next run sees it as it is then
        differences.record_action(session, item["id"], "review")
    return 1


def schedule_due(now: datetime | None = None) -> list[str]:
    """The schedule's sweep: days due get a run (or their unfinished one again), runs whose
    process died are sent again. The runs sent."""
    settings = get_settings()
    sent: list[str] = []
    with session_scope() as session:
        schedule.seed(
            session,
            runs.reporting_zones(),
            now or datetime.now(UTC),
            settings.recon_hour,
            settings.recon_lookback_days,
        )
        for due in schedule.claim_due(session):
            run_id = runs.unfinished_run(session, due.psp_id, due.day)
            if run_id is None:
                psp = runs.psp_in_scope(session, None, due.psp_id)
                if psp is None:  # the account went since its day was due: nothing to run
                    continue
                run_id = runs.create_run(session, psp, due.day, Trigger.SCHEDULE, "schedule").id
            else:
                runs.enqueue_run(session, run_id)
            sent.append(run_id)
        for run_id in runs.stale_runs(session, settings.recon_stale_after_seconds):
            if run_id not in sent:
                runs.enqueue_run(session, run_id)
                sent.append(run_id)
    if sent:
        log.info("recon.scheduled", runs=len(sent))
    return sent
