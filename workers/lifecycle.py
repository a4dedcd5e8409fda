"""What lives and dies with a worker process, as a Celery bootstep (Celery's own way to
hook a worker's start and stop): the outbox relay, and a watchdog that makes sure a
stopping worker really exits.

A worker stops on a signal, or on its own after an unrecoverable broker error (kombu's
Redis transport raises one now and then while Redis restarts). A threads-pool worker then
waits for its running tasks; should anything keep it waiting, the process would sit there
alive and idle, and its supervisor (commands.supervise) would never restart it. So stopping
starts a clock: past ``CONNXT_WORKER_SHUTDOWN_SECONDS`` the process exits anyway. Nothing is lost by
it: messages are acknowledged after their task ends, so the broker hands unfinished ones
to the next worker.
"""

from __future__ import annotations

import gc
import os
import threading
from typing import Any

import structlog
from celery import bootsteps

from connxt.settings import get_settings
from workers.publish import publish_rows
from workers.relay import OutboxRelay

log = structlog.get_logger()


class WorkerLifecycle(bootsteps.StartStopStep):
    requires = {"celery.worker.components:Pool"}

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self._relay: OutboxRelay | None = None

    def start(self, worker) -> None:
        # What the worker made while starting lives as long as it does: kept out of the
        # collector's sight, full collections stop walking it.
        gc.freeze()
        if get_settings().outbox_relay:
            self._relay = OutboxRelay(lambda rows: publish_rows(worker.app, rows))
            self._relay.start()

    def stop(self, worker) -> None:
        _exit_later(get_settings().worker_shutdown_seconds, getattr(worker, "exitcode", None) or 1)
        if self._relay is not None:
            self._relay.stop()

    def terminate(self, worker) -> None:
        self.stop(worker)


def _exit_later(seconds: float, code: int) -> None:
    def exit_now() -> None:
        log.error("worker.exit_forced", after_s=seconds, exit_code=code)
        os._exit(code)

    timer = threading.Timer(seconds, exit_now)
    timer.daemon = True
    timer.start()
