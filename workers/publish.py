"""Outbox rows as Celery messages: packed per task and lane, published in one go.

The relay (workers.relay) and beat's re-drive both publish through here. Rows for the same
task and lane travel together, up to ``relay_message_items`` per message, or
``set_message_items`` for the tasks applied as a set (``kwargs = {"batch": [...]}``,
workers.item_threads).
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog
from celery import Celery

from connxt.settings import get_settings
from connxt.tasks import SET_TASKS
from storage.outbox import Unsent

log = structlog.get_logger()


def _packed(rows: Sequence[Unsent]) -> list[tuple[str, str | None, list[Unsent]]]:
    """Rows as messages: per task and lane, up to the task's items per message each."""
    groups: dict[tuple[str, str | None], list[Unsent]] = {}
    for row in rows:
        groups.setdefault((row.task, row.queue), []).append(row)
    return [
        (task, queue, members[i : i + size])
        for (task, queue), members in groups.items()
        for size in [message_items(task)]
        for i in range(0, len(members), size)
    ]


def message_items(task: str) -> int:
    settings = get_settings()
    return settings.set_message_items if task in SET_TASKS else settings.relay_message_items


def publish_rows(app: Celery, rows: Sequence[Unsent]) -> set[int]:
    """Publish the rows' tasks, packed in batches, over one producer; the ids that left."""
    sent: set[int] = set()
    try:
        # On Redis, one pipeline for all of them (kombu's publish batch); a transport that
        # cannot batch publishes one by one (RabbitMQ: each waits for its confirm, so what
        # is returned as sent is on the broker).
        with app.producer_or_acquire() as producer, producer.batch():
            for task, queue, members in _packed(rows):
                app.send_task(
                    task,
                    kwargs={"batch": [row.args for row in members]},
                    queue=queue,
                    producer=producer,
                )
                sent.update(row.id for row in members)
    except Exception as exc:  # the broker is away: the caller retries later
        # A batch that failed to flush sent nothing: all of it stays for the next try.
        log.warning("outbox.publish_failed", error=type(exc).__name__)
        return set()
    return sent
