"""Every task runs through workers.task.ConnxtTask: its ids bound for its log lines and
cleared after, its duration counted by outcome, its batch retried on its own lane."""

from __future__ import annotations

import pytest
import structlog
from celery.exceptions import Retry
from prometheus_client import REGISTRY

from workers.app import celery_app
from workers.task import ConnxtTask

seen: dict = {}


@celery_app.task(name="tests.probe", bind=True)
def probe(self, fail: bool = False, **_item) -> None:
    seen.clear()
    seen.update(structlog.contextvars.get_contextvars())
    if fail:
        raise ValueError("the probe failed")


@celery_app.task(name="tests.retrying", bind=True)
def retrying(self, batch=None) -> None:
    self.retry_items(batch or [])


def runs(outcome: str, task: str = "tests.probe") -> float:
    labels = {"task": task, "outcome": outcome}
    return REGISTRY.get_sample_value("connxt_task_seconds_count", labels) or 0.0


def test_every_task_of_the_app_is_a_connxt_task():
    assert isinstance(probe, ConnxtTask)
    assert all(
        isinstance(task, ConnxtTask)
        for name, task in celery_app.tasks.items()
        if not name.startswith("celery.")
    )


def test_a_task_logs_with_its_ids_and_is_timed():
    before = runs("success")
    structlog.contextvars.bind_contextvars(left_over="from an earlier task")
    probe.apply(kwargs={"txn_id": "txn_1"}, task_id="task-1")
    assert seen == {"task_id": "task-1", "task": "tests.probe", "txn_id": "txn_1"}
    assert structlog.contextvars.get_contextvars() == {}  # nothing leaks to the next task
    assert runs("success") == before + 1


def test_a_failed_task_is_counted_as_one():
    before = runs("failure")
    result = probe.apply(kwargs={"fail": True})
    assert isinstance(result.result, ValueError)
    assert runs("failure") == before + 1
    assert structlog.contextvars.get_contextvars() == {}


def test_items_to_try_again_go_back_as_one_message_and_nothing_else_does():
    before = runs("retry", "tests.retrying")
    retrying.apply(kwargs={"batch": []})  # nothing to try again: no retry
    assert runs("retry", "tests.retrying") == before
    with pytest.raises(Retry):  # an eager retry raises it
        retrying.apply(kwargs={"batch": [{"txn_id": "txn_1"}]}, throw=True)
    assert runs("retry", "tests.retrying") == before + 1
