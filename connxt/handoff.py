"""The initiation outcome, handed from the worker to the ingress request that waits for it.

A Redis list per transaction: the worker pushes once the outcome is committed, the ingress
blocks on it for a bounded time. A list (not pub/sub) means a push that lands before the
ingress starts waiting is not lost. The value is only a wake-up: the ingress reads the
transaction from PostgreSQL, the record of truth.
"""

from __future__ import annotations

import redis

from connxt.redis import get_async_redis, get_redis

_TTL_SECONDS = 120


def _key(txn_id: str) -> str:
    return f"outcome:{txn_id}"


def signal_outcome(txn_id: str) -> None:
    try:
        get_redis().pipeline().lpush(_key(txn_id), "1").expire(_key(txn_id), _TTL_SECONDS).execute()
    except redis.RedisError:
        pass  # the ingress falls back to answering 202 with the stored status


async def wait_for_outcome(txn_id: str, timeout: float) -> bool:
    """True when the worker signalled within ``timeout`` seconds."""
    if timeout <= 0:
        return False
    try:
        return await get_async_redis().blpop([_key(txn_id)], timeout=timeout) is not None
    except redis.RedisError:
        return False
