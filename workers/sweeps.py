"""Scheduled sweeps that two beats cannot run twice.

Two `connxt beat` processes (two hosts by mistake, or both sides of a rolling deploy) send
every scheduled sweep twice. Each sweep is harmless twice (its claims use
``FOR UPDATE SKIP LOCKED`` and book what they take), and on top of that this guard makes
it run at most once per slot of its interval and never beside itself: a sweep first takes
its lock (held for as long as it runs, workers.locks), then marks its slot; a second
message finding either taken is skipped, logged and counted.

Keys carry ``CONNXT_BROKER_KEY_PREFIX``: deployments sharing a Redis guard their own sweeps.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, TypeVar

import structlog

from connxt.metrics import SWEEPS
from connxt.redis import get_redis
from connxt.settings import Settings, get_settings
from workers.locks import hold_many

log = structlog.get_logger()

T = TypeVar("T")


def once_per_slot(
    name: str, interval: Callable[[Settings], float], skipped: Any = 0
) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Run the decorated sweep only when no other runs it now and none ran in this slot
    (``interval`` seconds, from the settings); else return ``skipped``."""

    def decorate(sweep: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(sweep)
        def guarded(*args: Any, **kwargs: Any) -> T:
            settings = get_settings()
            prefix = settings.broker_key_prefix
            seconds = max(interval(settings), 0.001)
            with hold_many([f"{prefix}sweep:{name}"]) as (held, _busy):
                slot = int(time.time() // seconds)
                ran_in_slot = not held or not get_redis().set(
                    f"{prefix}sweep-slot:{name}:{slot}", 1, nx=True, px=int(seconds * 2000) + 1
                )
                if ran_in_slot:
                    SWEEPS.labels(name, "skipped").inc()
                    log.info("sweep.skipped", sweep=name, running=not held)
                    return skipped
                started = time.time()
                try:
                    return sweep(*args, **kwargs)
                finally:
                    SWEEPS.labels(name, "ran").inc()
                    log.info("sweep.ran", sweep=name, slot=slot, started=started, ended=time.time())

        return guarded

    return decorate
