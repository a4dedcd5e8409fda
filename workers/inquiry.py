"""Ask the PSP where a transaction stands and apply the answer.

Used for redirects (never trusted on their own), unverifiable webhooks, and
reconciliation. Expiry lives here too (workers.expiry): a deposit the PSP still calls
unpaid after the expiry window ends FAILED with reason `expired`. A transaction held for
an operator is not asked about again: nothing but the operator settles it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from connectors.base import Outcome, PspResult
from connxt.settings import get_settings
from state_machine import TERMINAL, Source, Status
from storage.db import session_scope
from storage.inquiries import to_ask
from storage.psp_context import load_psp_context
from workers.expiry import expire
from workers.item_threads import Item, run_locked
from workers.psp_calls import call_psp, record_psp_answer

log = structlog.get_logger()


def inquire_transaction(txn_id: str, source: Source = Source.INQUIRY) -> Status | None:
    """Ask the PSP (caller holds the transaction lock); the status after, or None."""
    with session_scope() as session:
        txn = to_ask(session, txn_id)
        if txn is None or txn.status in TERMINAL or txn.held:
            return None if txn is None else txn.status
        if txn.status is Status.CREATED:
            return Status.CREATED  # never sent: the PSP cannot know it; re-drive initiates it
        context = load_psp_context(session, txn.psp_id)
    psp_txn_id, created_at, action = txn.psp_txn_id, txn.created_at, txn.action
    result = call_psp(
        context,
        "inquire",
        lambda: context.connector.inquire(context.credential, txn_id, psp_txn_id),
    )
    status = record_psp_answer(txn_id, result, source)
    if action == "DEPOSIT" and _abandoned(result, status, created_at):
        status = expire(txn_id, context, result.psp_txn_id or psp_txn_id, status)
    log.info("inquiry.done", txn_id=txn_id, outcome=result.outcome.value, status=status.value)
    return status


def _abandoned(result: PspResult, status: Status, created_at: datetime) -> bool:
    """Unpaid past the expiry window: the PSP still waits for the customer, or (hosted
    pages never opened) has no payment at all. An unreachable PSP (UNKNOWN) proves
    nothing, so it never expires one; nor does a hold, which waits for the operator."""
    expiry = timedelta(seconds=get_settings().deposit_expiry_seconds)
    return (
        result.outcome in (Outcome.ACCEPTED, Outcome.NOT_FOUND)
        and status in (Status.INITIATED, Status.PG_ACCEPTED)
        and datetime.now(UTC) - created_at > expiry
    )


def inquire_items(task: Any, items: list[Item]) -> None:
    """The body of every inquiry task: ask under each transaction's lock, side by side."""
    again = run_locked(task, items, lambda one: inquire_transaction(one["txn_id"], Source.INQUIRY))
    task.retry_items(again, countdown=2)
