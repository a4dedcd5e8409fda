"""What every Connxt task shares, in one class set as the app's ``Task`` (workers.app).

Around each run: the structlog context of the task (its id and name, and the transaction
when the message names one), cleared again after, so no line of one task carries another's
ids; and its duration by outcome (``connxt_task_seconds{task,outcome}``).

For tasks over batches (workers.item_threads): ``retry_items`` sends the items that could not be
done now (a transaction's lock held elsewhere, the database or Redis away for a moment)
again as one message on the lane they came through, a little later.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from celery import Task
from celery.exceptions import Retry

from connxt.broker import lane_of
from connxt.metrics import TASKS, labelled
from connxt.settings import get_settings

log = structlog.get_logger()

_task_seconds = labelled(TASKS)


class ConnxtTask(Task):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(task_id=self.request.id, task=self.name)
        if "txn_id" in kwargs:
            structlog.contextvars.bind_contextvars(txn_id=kwargs["txn_id"])
        started, outcome = time.perf_counter(), "failure"
        try:
            result = super().__call__(*args, **kwargs)
            outcome = "success"
            return result
        except Retry:
            outcome = "retry"
            raise
        finally:
            _task_seconds(self.name, outcome).observe(time.perf_counter() - started)
            structlog.contextvars.clear_contextvars()

    def retry_items(self, items: list[dict[str, Any]], countdown: float = 1.0) -> None:
        """Send these items again as one message on the same lane, a little later
        (Celery's retry: counted in the message, logged by Celery); past
        ``task_max_attempts`` they are left to the sweeps, which find every row that is not
        done."""
        if not items:
            return
        retries = self.request.retries or 0
        if retries >= get_settings().task_max_attempts:
            log.error("task.retries_exhausted", task=self.name, items=len(items))
            return
        # The lane it came through, named: left to Celery, a retry would follow the task's
        # default route (the shared lane) rather than the PSP's own.
        lane = lane_of((self.request.delivery_info or {}).get("routing_key"))
        # The limit is ours (above): Celery's own, whatever the task declares, must not
        # come first (``max_retries=None`` would mean the task's, three by default).
        raise self.retry(
            kwargs={"batch": items},
            countdown=countdown * (retries + 1),
            max_retries=get_settings().task_max_attempts + 1,
            queue=lane,
        )
