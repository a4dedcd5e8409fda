"""Healing sweeps run by beat: reconciliation of stuck transactions, outbox and inbox
re-drive, and retention (`reconcile.*`).

Every sweep claims its rows with `FOR UPDATE SKIP LOCKED`, so several beat instances can
run at once without sending anything twice in the same pass; the tasks they send are
idempotent in any case. On top of that each runs once per slot of its interval, never
beside itself (workers.sweeps), however many beats send it.
"""

from __future__ import annotations

from datetime import timedelta

import structlog

from connxt import tasks
from connxt.settings import get_settings
from storage import inbox, retention
from storage.db import get_engine, session_scope
from storage.inquiry_schedule import Due, claim_due
from storage.outbox import relay_batch
from workers.app import celery_app, publish_many
from workers.publish import message_items
from workers.sweeps import once_per_slot

log = structlog.get_logger()

# What one retention run may take: well inside the task's soft time limit; whatever is
# left goes with the next run.
RETENTION_BUDGET_SECONDS = 20.0


def due_for_inquiry(limit: int = 200, txn_id: str | None = None) -> list[Due]:
    """Claim open transactions whose next look is due (or the one named) and book the
    look after (storage.inquiry_schedule)."""
    with session_scope() as session:
        return claim_due(session, limit, txn_id)


def _send_batches(task: str, queue: str, txn_ids: list[str]) -> None:
    size = message_items(task)
    for i in range(0, len(txn_ids), size):
        batch = [{"txn_id": t} for t in txn_ids[i : i + size]]
        celery_app.send_task(task, kwargs={"batch": batch}, queue=queue)


@celery_app.task(name="reconcile.sweep")
def sweep(txn_id: str | None = None) -> int:
    """Scheduled looks go to the reconcile lane, in batches: however many are due, they
    never take the threads of fresh payments. Re-initiations go to the PSP's lane. One
    transaction (an operator's ``connxt reconcile --txn``) is looked at at once."""
    if txn_id is not None:
        return _sweep(txn_id)
    return _scheduled_sweep()


@once_per_slot("reconcile.sweep", lambda s: s.reconcile_interval_seconds)
def _scheduled_sweep() -> int:
    return _sweep(None)


def _sweep(txn_id: str | None) -> int:
    settings = get_settings()
    per_sweep = max(1, round(settings.reconcile_rate * settings.reconcile_interval_seconds))
    due = due_for_inquiry(limit=per_sweep, txn_id=txn_id)
    restart: dict[str, list[str]] = {}
    for item in due:
        if item.needs_initiation:
            restart.setdefault(tasks.psp_queue(item.connector), []).append(item.txn_id)
    for queue, txn_ids in restart.items():
        _send_batches(tasks.INITIATE, queue, txn_ids)
    looks = [item.txn_id for item in due if not item.needs_initiation]
    _send_batches(tasks.INQUIRE, tasks.RECONCILE_QUEUE, looks)
    if due:
        log.info("reconcile.sweep", due=len(due), initiations=len(due) - len(looks))
    return len(due)


@celery_app.task(name="reconcile.redrive_outbox")
@once_per_slot("reconcile.redrive_outbox", lambda s: s.redrive_interval_seconds)
def redrive_outbox() -> int:
    """The relay's safety net: rows older than a few seconds that no relay sent."""
    settings = get_settings()
    with session_scope() as session:
        relayed = relay_batch(
            session,
            publish_many,
            older_than=timedelta(seconds=settings.outbox_redrive_after_seconds),
            limit=200,
            max_attempts=settings.task_max_attempts,
        )
    if relayed.sent or relayed.failed:
        log.info("outbox.redriven", sent=relayed.sent, failed=relayed.failed)
    return relayed.sent


@celery_app.task(name="reconcile.redrive_inbox")
@once_per_slot("reconcile.redrive_inbox", lambda s: s.redrive_interval_seconds * 2)
def redrive_inbox() -> int:
    settings = get_settings()
    with session_scope() as session:
        ids = inbox.claim_unprocessed(
            session, timedelta(seconds=settings.inbox_redrive_after_seconds)
        )
    size = message_items(tasks.WEBHOOK)
    for i in range(0, len(ids), size):
        batch = [{"inbox_id": inbox_id} for inbox_id in ids[i : i + size]]
        celery_app.send_task(tasks.WEBHOOK, kwargs={"batch": batch})
    if ids:
        log.info("inbox.redriven", count=len(ids))
    return len(ids)


@celery_app.task(name="reconcile.prune")
@once_per_slot("reconcile.prune", lambda s: s.retention_interval_seconds, skipped={})
def prune() -> dict[str, int]:
    """Retention (storage.retention): rows past their days go, in small batches."""
    deleted = retention.prune(get_engine(), get_settings(), RETENTION_BUDGET_SECONDS)
    if any(deleted.values()):
        log.info("retention.pruned", **deleted)
    return deleted
