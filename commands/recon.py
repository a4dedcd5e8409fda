"""`connxt recon`: settlement reconciliation, a PSP's settlement report of one account and
day matched against the transactions (workers.recon). Not `connxt reconcile`, which asks
PSPs where open transactions stand."""

from __future__ import annotations

import argparse
import csv
import getpass
import json
import sys
from datetime import date
from typing import Any, TextIO

HELP = (
    "settlement reconciliation: match a PSP's settlement report of one account and day "
    "against the transactions (status checks of open transactions are `connxt reconcile`)"
)
EXIT_FAILED, EXIT_BUSY = 1, 75
EXPORT_COLUMNS = (
    "differenceId",
    "runId",
    "pspId",
    "date",
    "class",
    "state",
    "txnId",
    "ourStatus",
    "ourAmount",
    "ourCurrency",
    "pspPaymentId",
    "reference",
    "type",
    "gross",
    "fee",
    "net",
    "pspCurrency",
    "settledAt",
    "firstSeenAt",
    "action",
    "note",
    "resolvedBy",
    "resolvedAt",
)


def add_parser(sub: Any) -> None:
    recon = sub.add_parser("recon", help=HELP, description=HELP)
    verbs = recon.add_subparsers(dest="recon_command", required=True)
    run = verbs.add_parser("run", help="reconcile one PSP account's day now")
    run.add_argument("--psp", required=True, help="the PSP account (psp_...)")
    run.add_argument("--date", required=True, help="the PSP's settlement day, YYYY-MM-DD")
    run.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    run.add_argument(
        "--wait", type=float, default=600, help="seconds to wait for a run of that day (600)"
    )
    run.set_defaults(func=_run)
    export = verbs.add_parser("export", help="a run's differences as CSV")
    export.add_argument("run_id")
    export.set_defaults(func=_export)
    resolve = verbs.add_parser("resolve", help="close a difference with a note")
    resolve.add_argument("difference_id", type=int)
    resolve.add_argument("--note", required=True, help="what was found or done: recorded")
    resolve.add_argument("--by", default=None, help="who resolves it (default: the user)")
    resolve.set_defaults(func=_resolve)
    listing = verbs.add_parser("list", help="recent runs, newest day first")
    listing.add_argument("--psp", default=None)
    listing.add_argument("--limit", type=int, default=20)
    listing.set_defaults(func=_list)


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        sys.exit(f"--date must be YYYY-MM-DD, not {text!r}")


def _run(args: argparse.Namespace) -> None:
    from storage.db import session_scope
    from storage.recon import runs
    from storage.recon.vocabulary import Trigger
    from workers import recon

    day = _day(args.date)
    with session_scope() as session:
        try:
            psp = runs.reportable_psp(session, None, args.psp, day)
        except runs.NoReport as refused:
            sys.exit(str(refused))
        if psp is None:
            sys.exit(f"no PSP account {args.psp}")
        run = runs.create_run(session, psp, day, Trigger.CLI, _operator(), enqueue=False)
    try:
        outcome = recon.execute(run.id, wait_seconds=args.wait)
    except recon.RunBusy as exc:
        with session_scope() as session:
            runs.mark_failed(session, run.id, f"not run: {exc}")
        print(f"connxt recon: {exc}", file=sys.stderr)
        sys.exit(EXIT_BUSY)
    if args.json:
        body = outcome.summary or {"runId": run.id, "status": outcome.status}
        print(json.dumps({**body, "status": outcome.status, "error": outcome.error}))
    else:
        _print_outcome(outcome)
    if outcome.status != "COMPLETED":
        sys.exit(EXIT_FAILED)


def _print_outcome(outcome: Any) -> None:
    if outcome.summary is None:
        print(
            f"run {outcome.run_id}: {outcome.status}"
            + (f": {outcome.error}" if outcome.error else "")
        )
        return
    summary = outcome.summary
    print(f"run {summary['runId']}  {summary['pspId']}  {summary['date']}  COMPLETED")
    print(
        f"  lines {summary['lines']}, transactions {summary['transactions']}, "
        f"matched {summary['matched']} ({summary['matchedShare']:.2%})"
    )
    for klass, count in summary["differences"].items():
        print(f"  {klass:18} {count}")
    for currency, totals in sorted(summary["totals"].items()):
        print(f"  {currency}: gross {totals['gross']}, fee {totals['fee']}, net {totals['net']}")


def _operator() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _export(args: argparse.Namespace) -> None:
    from storage.db import session_scope
    from storage.recon import differences, runs

    with session_scope() as session:
        if runs.get_run(session, None, args.run_id) is None:
            sys.exit(f"no run {args.run_id}")
        write_csv(sys.stdout, differences.all_of_run(session, None, args.run_id))


def write_csv(out: TextIO, found: Any) -> int:
    """The differences as CSV rows (EXPORT_COLUMNS), both sides of each; how many."""
    from storage.recon.views import difference_view

    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    count = 0
    for difference in found:
        view = difference_view(difference)
        ours, theirs = view["ours"] or {}, view["theirs"] or {}
        resolution = view["resolution"] or {}
        writer.writerow(
            [
                view["id"],
                view["runId"],
                view["pspId"],
                view["date"],
                view["class"],
                view["state"],
                view["txnId"],
                ours.get("status"),
                ours.get("amount"),
                ours.get("currency"),
                theirs.get("pspPaymentId"),
                theirs.get("reference"),
                theirs.get("type"),
                theirs.get("gross"),
                theirs.get("fee"),
                theirs.get("net"),
                theirs.get("currency"),
                theirs.get("settledAt"),
                view["firstSeenAt"],
                view["action"],
                resolution.get("note"),
                resolution.get("resolvedBy"),
                resolution.get("resolvedAt"),
            ]
        )
        count += 1
    return count


def _resolve(args: argparse.Namespace) -> None:
    from storage.db import session_scope
    from storage.recon import differences

    note = args.note.strip()
    if not note:
        sys.exit("--note must say something")
    try:
        with session_scope() as session:
            found = differences.resolve(
                session, None, args.difference_id, note, args.by or _operator()
            )
    except LookupError:
        sys.exit(f"no difference {args.difference_id}")
    except differences.AlreadyResolved:
        sys.exit(f"difference {args.difference_id} was resolved already")
    print(f"difference {found.id} ({found.klass}, {found.subject}) resolved by {found.resolved_by}")


def _list(args: argparse.Namespace) -> None:
    from storage.db import session_scope
    from storage.recon import runs

    with session_scope() as session:
        found = runs.list_runs(session, None, limit=args.limit, psp_id=args.psp)
    for run in found:
        share = (run.summary or {}).get("matchedShare")
        shown = f"{share:.2%}" if isinstance(share, int | float) else "-"
        print(
            f"{run.id}  {run.day}  {run.psp_id}  {run.status:10} lines {run.lines or 0:>9}  "
            f"matched {shown:>8}  {run.trigger}"
        )
