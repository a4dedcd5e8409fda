"""What PSPs tell us after initiation: webhooks (`callbacks.webhook`), and the status
inquiries that redirects, unverifiable webhooks and the reconciliation sweep ask for
(`callbacks.inquire`).

Thin tasks: the rules are in workers.webhooks (one at a time) and workers.webhook_batch
(a batch as a set); inquiries in workers.inquiry.
"""

from __future__ import annotations

from typing import Any

from connxt import tasks
from workers.app import celery_app
from workers.batch import Item, items_of, run_unlocked
from workers.inquiry import inquire_items
from workers.webhook_batch import apply_webhooks
from workers.webhooks import process_inbox_message


@celery_app.task(name=tasks.WEBHOOK, bind=True)
def webhook(self, batch: list[Item] | None = None, **item: Any) -> None:
    """Apply stored notifications, as a set (workers.webhook_batch), each under its
    transaction's lock."""
    items = items_of(batch, item)
    known = [i for i in items if i.get("txn_id")]
    # Re-drive and replay may not know the transaction: read it, then lock it.
    unknown = [i for i in items if not i.get("txn_id")]
    again = apply_webhooks(known) if known else []
    again += run_unlocked(
        self, unknown, lambda one: process_inbox_message(one["inbox_id"]), "inbox_id"
    )
    self.retry_items(again)


@celery_app.task(name=tasks.INQUIRE, bind=True)
def inquire(self, batch: list[Item] | None = None, **item: Any) -> None:
    """Ask the PSP where each transaction stands: after a redirect or an unverifiable
    webhook, or as a scheduled look (workers.reconcile sends those to its own lane)."""
    inquire_items(self, items_of(batch, item))


@celery_app.task(name=tasks.RETIRED_SCHEDULED_INQUIRE, bind=True)
def retired_scheduled_inquire(self, batch: list[Item] | None = None, **item: Any) -> None:
    """Scheduled looks sent by an earlier release, under their old name."""
    inquire_items(self, items_of(batch, item))
