"""The per-address failure counter behind the ingress's 429 for unknown tokens (the
process's own count, which the fleet's falls back to while Redis is away)."""

from __future__ import annotations

import time

from connxt.rate_limit import FailureLimiter
from connxt.ttl_cache import TtlCache


def test_refuses_past_the_limit_until_the_window_ends():
    limiter = FailureLimiter(limit=3, window_seconds=0.3)
    assert [limiter.fail("10.0.0.1") for _ in range(3)] == [0, 0, 0]
    assert 0 < limiter.fail("10.0.0.1") <= 0.3
    assert limiter.fail("10.0.0.2") == 0  # per address
    time.sleep(0.35)
    assert limiter.fail("10.0.0.1") == 0  # a new window starts from one failure


def test_keeps_a_bounded_number_of_addresses():
    limiter = FailureLimiter(limit=1, window_seconds=60, max_keys=100)
    for n in range(1000):
        limiter.fail(f"a{n}")
    assert len(limiter._windows) == 100
    assert limiter.fail("a999") > 0 and limiter.fail("a0") == 0


def test_an_entry_can_live_shorter_than_the_cache_lifetime():
    cache: TtlCache[str, int] = TtlCache(10)
    cache.put("short", 1, ttl=0.1)
    cache.put("capped", 2, ttl=3600)  # never longer than the cache's own lifetime
    assert cache.get("short") == 1
    time.sleep(0.15)
    assert cache.get("short") is None and cache.get("capped") == 2
    assert cache._items["capped"][0] - time.monotonic() <= 10
