"""Messages that carry many items, and the threads that work on them side by side.

The outbox relay packs the tasks it finds into one message per task and lane (up to
``relay_message_items``), so the broker and Celery are paid once per batch rather than
once per transaction: ``kwargs = {"batch": [{"txn_id": ...}, ...]}``. A task also takes a
single item (``kwargs = {"txn_id": ...}``), as sweeps and operators send it.

Items run concurrently on the process's own threads (``worker_threads``), each under its
transaction's lock. A PSP call blocks only its thread, so the calls in flight are bounded
by the lane's threads, not by the number of processes; and since every PSP has a lane
(process) of its own, a slow PSP fills its own threads and nobody else's.

An item whose lock is busy, or whose work failed for a passing reason (the database or
Redis away for a moment), is sent again with the task's retry (a smaller batch, later:
``ConnxtTask.retry_items``, workers.task).
Anything else is logged loudly with its id and left to the healing sweeps, which own
every row that is not done.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis
import structlog
from sqlalchemy.exc import OperationalError

from connxt.settings import get_settings
from connxt.tracing import item_span
from workers.locks import LockBusy, transaction_locks

log = structlog.get_logger()

Item = dict[str, Any]

# Failures that say nothing about the item: try it again shortly.
TRANSIENT = (LockBusy, OperationalError, redis.RedisError, ConnectionError, TimeoutError)

_executor: ThreadPoolExecutor | None = None


def items_of(batch: list[Item] | None, single: Item) -> list[Item]:
    return list(batch) if batch is not None else [single]


def _threads() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(get_settings().worker_threads, thread_name_prefix="item")
    return _executor


def run_each(work: Callable[[Item], Any], items: Iterable[Item]) -> list[BaseException | None]:
    """Run ``work`` for every item on the process's threads; per item, its exception.

    A single item runs on the caller's thread: the caller may itself be one of the pool's
    threads (a set's fallback runs its items as sets of one), and waiting there for the
    pool could wait for ever once every thread waits the same way."""
    items = list(items)
    if len(items) == 1:
        try:
            contextvars.copy_context().run(_bound, work, items[0])
        except Exception as exc:
            return [exc]
        return [None]
    futures = []
    for item in items:
        # Each item logs with the task's context plus its own ids.
        context = contextvars.copy_context()
        futures.append(_threads().submit(context.run, _bound, work, item))
    return [future.exception() for future in futures]


def _bound(work: Callable[[Item], Any], item: Item) -> Any:
    structlog.contextvars.bind_contextvars(
        **{k: v for k, v in item.items() if k in ("txn_id", "inbox_id", "notification_id")}
    )
    with item_span(item):  # the item's own trace, when traces are on (connxt.tracing)
        return work(item)


def run_locked(task: Any, items: list[Item], work: Callable[[Item], Any]) -> list[Item]:
    """The body of a task over transactions: each item under its transaction's lock.
    Returns the items to try again (``ConnxtTask.retry_items``, workers.task).

    Items of one transaction (two notifications for one payment, say) run one after the
    other on one thread, in the order they came; different transactions side by side.
    """
    by_txn: dict[str, list[Item]] = {}
    for item in items:
        by_txn.setdefault(item["txn_id"], []).append(item)
    again: list[Item] = []
    with transaction_locks(list(by_txn)) as (held, busy):
        for txn_id in busy:
            again += by_txn[txn_id]
        failed = run_each(
            lambda group: _in_order(work, group["items"]),
            [{"txn_id": t, "items": by_txn[t]} for t in held],
        )
    for txn_id, error in zip(held, failed, strict=True):
        if error is None:
            continue
        if isinstance(error, _Stopped):
            again += error.rest if isinstance(error.cause, TRANSIENT) else []
            error = error.cause
        log.error(
            "task.item_failed",
            task=task.name,
            txn_id=txn_id,
            error=type(error).__name__,
            exc_info=error,
        )
    return again


class _Stopped(Exception):
    """An item failed: the items of its transaction from it on were not done."""

    def __init__(self, cause: BaseException, rest: list[Item]):
        super().__init__(str(cause))
        self.cause, self.rest = cause, rest


def _in_order(work: Callable[[Item], Any], group: list[Item]) -> None:
    for i, item in enumerate(group):
        try:
            with item_span(item):
                work(item)
        except Exception as exc:
            raise _Stopped(exc, group[i:]) from exc
