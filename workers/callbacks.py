"""What PSPs tell us after initiation: webhooks (`callbacks.webhook`), and the status
inquiries that redirects, unverifiable webhooks and the reconciliation sweep ask for
(`callbacks.inquire`).

Thin tasks: webhooks are applied by workers.webhooks (the rules in workers.webhook_rules),
inquiries by workers.inquiry.
"""

from __future__ import annotations

from typing import Any

from connxt import tasks
from workers.app import celery_app
from workers.inquiry import inquire_items
from workers.item_threads import Item, items_of
from workers.webhooks import apply_webhooks


@celery_app.task(name=tasks.WEBHOOK, bind=True)
def webhook(self, batch: list[Item] | None = None, **item: Any) -> None:
    """Apply stored notifications as a set, each under its transaction's lock: what the
    ingress stored, the re-drive and an operator's replay alike."""
    self.retry_items(apply_webhooks(items_of(batch, item)))


@celery_app.task(name=tasks.INQUIRE, bind=True)
def inquire(self, batch: list[Item] | None = None, **item: Any) -> None:
    """Ask the PSP where each transaction stands: after a redirect or an unverifiable
    webhook, or as a scheduled look (workers.reconcile sends those to its own lane)."""
    inquire_items(self, items_of(batch, item))


@celery_app.task(name=tasks.RETIRED_SCHEDULED_INQUIRE, bind=True)
def retired_scheduled_inquire(self, batch: list[Item] | None = None, **item: Any) -> None:
    """Scheduled looks sent by an earlier release, under their old name."""
    inquire_items(self, items_of(batch, item))
