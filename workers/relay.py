"""The outbox relay: sends the tasks that committed transactions left in the outbox.

Runs as a thread beside each Celery worker. It sleeps on PostgreSQL's LISTEN until a commit
that wrote outbox rows wakes it (storage.outbox sends the NOTIFY), then claims the unsent
rows in batches (SKIP LOCKED, so the relays of several workers share the work without
sending a row twice in one pass), publishes them, and deletes what left. Requests never
publish themselves: the ingress only writes rows, in its own group commit.

A missed wake-up costs at most ``poll_seconds``; a lost LISTEN connection is reopened.
Under load it paces itself (``pace_seconds`` between drains that found work), so each
message carries what a few commits left rather than one message per commit: the broker
and Celery are paid per message, and a few milliseconds buy several transactions each.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import structlog

from connxt.settings import get_settings
from storage.db import session_scope
from storage.outbox import Publisher, relay_batch, wakeups

log = structlog.get_logger()


class OutboxRelay:
    def __init__(
        self,
        publish: Publisher,
        batch_size: int = 500,
        poll_seconds: float = 1.0,
        pace_seconds: float | None = None,
    ):
        self._publish = publish
        self._batch_size = batch_size
        self._poll_seconds = poll_seconds
        self._pace_seconds = (
            get_settings().relay_pace_seconds if pace_seconds is None else pace_seconds
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="outbox-relay", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def drain(self) -> int:
        """Publish everything unsent now; the number of messages sent."""
        total, pause = 0, 0.5
        while not self._stop.is_set():
            with session_scope() as session:
                relayed = relay_batch(
                    session,
                    self._publish,
                    older_than=timedelta(0),
                    limit=self._batch_size,
                    max_attempts=None,
                )
            total += relayed.sent
            if relayed.failed:
                # The broker is away: back off, never spin on it.
                self._stop.wait(pause)
                pause = min(pause * 2, 10.0)
            elif relayed.sent < self._batch_size:
                return total
        return total

    def _run(self) -> None:
        url = get_settings().database_url
        while not self._stop.is_set():
            try:
                with wakeups(url) as commits:
                    while not self._stop.is_set():
                        if self.drain():
                            self._stop.wait(self._pace_seconds)
                        # A NOTIFY that arrived meanwhile wakes the next drain at once.
                        commits.wait(self._poll_seconds)
            except Exception as exc:  # the database or broker is away: retry
                log.warning("outbox.relay_error", error=type(exc).__name__)
                self._stop.wait(1.0)
