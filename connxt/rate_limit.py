"""Counting failures per client: a client address that keeps presenting unknown tokens is
answered 429 until its window ends.

Fixed windows per key: the first failure opens a window of ``window_seconds``; past
``limit`` failures inside it the key is refused until the window ends. The count is the
fleet's (``FleetFailureLimiter``: one Redis counter per key, so ten ingress processes
do not let ten times the limit through), and falls back to a count per process
(``FailureLimiter``) while Redis does not answer.

Only failures are counted and only failures are refused: a valid token is never refused
because of what others sent from the same address (api_gateway/auth.py checks the token
first), since clients behind one NAT or one proxy share an address.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

import redis
import structlog

log = structlog.get_logger()


class FailureLimiter:
    """The count of one process."""

    def __init__(self, limit: int, window_seconds: float, max_keys: int = 100_000):
        self.limit = limit
        self.window = window_seconds
        self.max_keys = max_keys
        # key → (window end, failures in it); oldest first, so the map stays bounded.
        self._windows: OrderedDict[str, tuple[float, int]] = OrderedDict()
        self._lock = threading.Lock()

    def fail(self, key: str) -> float:
        """Count a failure of ``key``; seconds it is refused for (0: not refused)."""
        now = time.monotonic()
        with self._lock:
            ends, failures = self._windows.get(key, (0.0, 0))
            if ends <= now:
                ends, failures = now + self.window, 0
            failures += 1
            self._windows[key] = (ends, failures)
            self._windows.move_to_end(key)
            while len(self._windows) > self.max_keys:
                self._windows.popitem(last=False)
        return ends - now if failures > self.limit else 0.0

    def clear(self) -> None:
        with self._lock:
            self._windows.clear()


class FleetFailureLimiter:
    """The count of every process that shares the Redis, one round trip per failure. After
    Redis fails to answer, the process counts alone for ``LOCAL_AFTER_ERROR_SECONDS``
    before asking again: a Redis that is down costs one failed call, not one per request."""

    LOCAL_AFTER_ERROR_SECONDS = 5.0

    def __init__(self, client: redis.Redis, prefix: str, limit: int, window_seconds: float):
        self.limit = limit
        self.window_ms = int(window_seconds * 1000)
        self._client = client
        self._prefix = f"{prefix}authfail:"
        self._local = FailureLimiter(limit, window_seconds)
        self._local_until = 0.0

    def fail(self, key: str) -> float:
        if time.monotonic() < self._local_until:
            return self._local.fail(key)
        name = self._prefix + key
        try:
            pipe = self._client.pipeline(transaction=False)
            pipe.set(name, 0, px=self.window_ms, nx=True)  # opens the window
            pipe.incr(name)
            pipe.pttl(name)
            _, failures, left_ms = pipe.execute()
        except (redis.RedisError, OSError) as exc:
            log.warning("auth.failure_count_local", error=type(exc).__name__)
            self._local_until = time.monotonic() + self.LOCAL_AFTER_ERROR_SECONDS
            return self._local.fail(key)
        return max(left_ms, 0) / 1000 if failures > self.limit else 0.0

    def clear(self) -> None:
        self._local.clear()
