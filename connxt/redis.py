"""One Redis connection pool per process (sync) and one per event loop (async).

Every client has a connect timeout and a socket timeout: a Redis that is down or hangs
costs a caller seconds at most (locks re-schedule, markers are skipped, hand-off signals
are dropped), never a thread or a request for good. The outcome subscription
(connxt.handoff) bounds its own reads with a heartbeat.
"""

from __future__ import annotations

import asyncio
from functools import lru_cache

import redis
import redis.asyncio as aioredis

from connxt.settings import get_settings


@lru_cache
def get_redis() -> redis.Redis:
    return redis.Redis.from_url(
        get_settings().redis_url,
        socket_timeout=5,
        socket_connect_timeout=2,
        health_check_interval=30,
    )


_async_clients: dict[int, aioredis.Redis] = {}


def get_async_redis() -> aioredis.Redis:
    """A client for the running event loop: asyncio connections cannot cross loops."""
    loop_id = id(asyncio.get_running_loop())
    client = _async_clients.get(loop_id)
    if client is None:
        client = _async_clients[loop_id] = aioredis.Redis.from_url(
            get_settings().redis_url,
            socket_connect_timeout=2,
            # Every wait on Redis is bounded: a hung server must not hang a request.
            socket_timeout=2,
            health_check_interval=30,
        )
    return client
