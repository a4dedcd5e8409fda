"""Drain, not drop: what an ingress process does between SIGTERM and its exit.

A balancer (haproxy's health check, Kubernetes' endpoints) learns that a process is
going away only from its readiness, and only at its next check. So on SIGTERM:

1. ``/readyz`` answers 503 at once, while every request, new ones included, is still
   served for ``CONNXT_DRAIN_SECONDS``: long enough for the balancer to stop sending here
   (the shipped haproxy checks every second and gives up after two failures; Kubernetes
   takes a few seconds to take a terminating pod out of its endpoints);
2. then uvicorn's graceful shutdown: the listener closes, requests in flight finish (their
   group commits too), each keep-alive connection is closed after its response
   (``Connection: close``) or at once when idle, within ``CONNXT_SHUTDOWN_GRACE_SECONDS``;
   requests still waiting for an initiation's outcome are answered from the row at once
   (a 202 where it is not decided yet) rather than cut at the bound;
3. the lifespan closes the pools and the process exits.

A second SIGTERM, or SIGINT (Ctrl-C, ``make run``), skips the drain.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType

import structlog
import uvicorn

log = structlog.get_logger()

_draining = threading.Event()
_on_stop: list[Callable[[], None]] = []


def is_draining() -> bool:
    return _draining.is_set()


def on_stop(callback: Callable[[], None]) -> None:
    """Run ``callback`` when the drain ends and the graceful shutdown begins."""
    _on_stop.append(callback)


def off_stop(callback: Callable[[], None]) -> None:
    if callback in _on_stop:
        _on_stop.remove(callback)


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, drain_seconds: float):
        super().__init__(config)
        self.drain_seconds = drain_seconds

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig == signal.SIGTERM and not _draining.is_set() and self.drain_seconds > 0:
            _draining.set()
            log.info("api.draining", drain_s=self.drain_seconds)
            timer = threading.Timer(self.drain_seconds, self._stop)
            timer.daemon = True
            timer.start()
            return
        super().handle_exit(sig, frame)

    def _stop(self) -> None:
        self.should_exit = True  # uvicorn's main loop looks every tenth of a second

    async def shutdown(self, sockets=None) -> None:
        _draining.set()
        for callback in _on_stop:
            callback()
        await super().shutdown(sockets)
        log.info("api.drained")
