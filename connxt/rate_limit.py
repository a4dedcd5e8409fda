"""Counting failures per client, in process: enough to keep one address from turning a
flood of bad requests into a flood of database lookups.

Fixed windows per key: the first failure opens a window of ``window_seconds``; past
``limit`` failures inside it the key is blocked until the window ends. A fleet of ingress
processes counts per process (each lets ``limit`` through per window); counting across
the fleet needs a shared counter (a Redis INCR with EXPIRE per address and window) or
the same rule at the load balancer.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict


class FailureLimiter:
    def __init__(self, limit: int, window_seconds: float, max_keys: int = 100_000):
        self.limit = limit
        self.window = window_seconds
        self.max_keys = max_keys
        # key → (window end, failures in it); oldest first, so the map stays bounded.
        self._windows: OrderedDict[str, tuple[float, int]] = OrderedDict()
        self._lock = threading.Lock()

    def blocked_for(self, key: str) -> float:
        """Seconds until ``key`` may try again; 0 when it may now."""
        with self._lock:
            window = self._windows.get(key)
        if window is None:
            return 0.0
        ends, failures = window
        left = ends - time.monotonic()
        return left if failures >= self.limit and left > 0 else 0.0

    def record(self, key: str) -> None:
        now = time.monotonic()
        with self._lock:
            ends, failures = self._windows.get(key, (0.0, 0))
            if ends <= now:
                ends, failures = now + self.window, 0
            self._windows[key] = (ends, failures + 1)
            self._windows.move_to_end(key)
            while len(self._windows) > self.max_keys:
                self._windows.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._windows.clear()
