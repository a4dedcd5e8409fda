"""The Celery app and its reliability settings (docs/ARCHITECTURE.md §5).

State lives in PostgreSQL, so results are ignored. Messages are acknowledged after the
task finishes and given back if the worker dies, prefetch is one, and the broker's
visibility timeout is longer than any task may run, so a message is redelivered only
when its worker is really gone. Every task is safe to run twice.

Messages carry batches (workers.item_threads) and go to lanes (connxt.tasks): each PSP's calls
to a queue of its own, consumed by a worker process of its own.
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog
from celery import Celery
from celery.signals import setup_logging, worker_init, worker_process_init

from connectors.registry import lane_queues
from connxt import tasks, tracing
from connxt.broker import celery_config, is_amqp
from connxt.logging import configure_logging
from connxt.settings import get_settings
from storage.outbox import Unsent
from workers.lifecycle import WorkerLifecycle
from workers.publish import publish_rows
from workers.task import ConnxtTask

log = structlog.get_logger()

# Where a task goes when whoever sent it named no lane.
DEFAULT_QUEUE = {
    tasks.INITIATE: tasks.ANY_PSP_QUEUE,
    tasks.INQUIRE: tasks.ANY_PSP_QUEUE,
    tasks.WEBHOOK: tasks.CALLBACKS_QUEUE,
    tasks.NOTIFY: tasks.NOTIFY_QUEUE,
    tasks.DELIVER: tasks.NOTIFY_QUEUE,
    tasks.RECON_RUN: tasks.RECONCILE_QUEUE,
    tasks.RECON_SCHEDULE: tasks.RECONCILE_QUEUE,
}


settings = get_settings()

celery_app = Celery(
    "connxt",
    # Every task's context, timing and batch retry (workers.task).
    task_cls=ConnxtTask,
    include=[
        "workers.initiation",
        "workers.callbacks",
        "workers.notify",
        "workers.reconcile",
        "workers.recon_tasks",
    ],
)
celery_app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    task_serializer="json",
    accept_content=["json"],
    task_default_queue=tasks.RECONCILE_QUEUE,
    task_routes={
        **{name: {"queue": queue} for name, queue in DEFAULT_QUEUE.items()},
        "reconcile.*": {"queue": tasks.RECONCILE_QUEUE},
    },
    broker_connection_retry_on_startup=True,
    broker_connection_max_retries=None,
    worker_cancel_long_running_tasks_on_connection_loss=False,
    task_time_limit=50,
    task_soft_time_limit=45,
    worker_hijack_root_logger=False,
    # Our structlog lines go to stderr as they are; Celery must not re-log them as warnings.
    worker_redirect_stdouts=False,
    timezone="UTC",
    beat_schedule={
        "outbox-redrive": {
            "task": "reconcile.redrive_outbox",
            "schedule": settings.redrive_interval_seconds,
        },
        "inbox-redrive": {
            "task": "reconcile.redrive_inbox",
            "schedule": settings.redrive_interval_seconds * 2,
        },
        "reconcile-sweep": {
            "task": "reconcile.sweep",
            "schedule": settings.reconcile_interval_seconds,
        },
        "notify-sweep": {
            "task": "notify.sweep",
            "schedule": settings.redrive_interval_seconds * 2,
        },
        # Settlement reconciliation: the days due (storage.recon.schedule) get their runs.
        "recon-schedule": {
            "task": tasks.RECON_SCHEDULE,
            "schedule": settings.recon_sweep_interval_seconds,
        },
        "retention-prune": {
            "task": "reconcile.prune",
            "schedule": settings.retention_interval_seconds,
        },
    },
)
# Redis or RabbitMQ (connxt.broker): the URL, and the queues and options each needs.
celery_app.conf.update(celery_config(settings, lane_queues()))


def publish_many(rows: Sequence[Unsent]) -> set[int]:
    """The outbox's publisher for this app (workers.publish)."""
    return publish_rows(celery_app, rows)


celery_app.steps["worker"].add(WorkerLifecycle)


@setup_logging.connect
def _setup_logging(loglevel=None, **_kwargs) -> None:
    """Celery's logging set-up is ours: with a receiver here, Celery adds no handler of its
    own (which would print its records, task errors included, without our redaction)."""
    configure_logging(get_settings(), stdlib_level=loglevel)


@worker_init.connect
@worker_process_init.connect
def _init_process(**_kwargs) -> None:
    configure_logging(get_settings())
    if tracing.setup("connxt-worker"):  # with OTEL_EXPORTER_OTLP_ENDPOINT only
        tracing.instrument_celery()


@worker_init.connect
def _declare_lanes(**_kwargs) -> None:
    """On RabbitMQ, every lane exists before the worker binds them for delayed delivery:
    a lane process binds all lanes, not only those it consumes, and would otherwise race
    the processes that declare them."""
    if is_amqp(celery_app.conf.broker_url):
        with celery_app.connection_for_write() as conn:
            channel = conn.default_channel
            for queue in celery_app.amqp.queues.values():
                queue.bind(channel).declare()
