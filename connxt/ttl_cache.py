"""A small in-process cache with expiry, for hot reads that may be a few seconds stale."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    def __init__(self, ttl_seconds: float, max_items: int = 10_000):
        self.ttl = ttl_seconds
        self.max_items = max_items
        self._items: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        """The cached value while fresh, else None."""
        with self._lock:
            hit = self._items.get(key)
            if hit is not None and hit[0] > time.monotonic():
                self._items.move_to_end(key)
                return hit[1]
        return None

    def put(self, key: K, value: V, ttl: float | None = None) -> None:
        """Remember ``value`` for the cache's lifetime, or for ``ttl`` seconds if shorter."""
        lifetime = self.ttl if ttl is None else min(ttl, self.ttl)
        with self._lock:
            self._items[key] = (time.monotonic() + lifetime, value)
            self._items.move_to_end(key)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)

    def discard(self, key: K) -> None:
        with self._lock:
            self._items.pop(key, None)

    def get_or_load(self, key: K, load: Callable[[], V | None]) -> V | None:
        """The cached value, or ``load()``'s; a None result is not cached."""
        value = self.get(key)
        if value is None:
            value = load()
            if value is not None:
                self.put(key, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
