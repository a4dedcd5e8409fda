"""Per-transaction Redis locks: they keep two workers from calling a PSP at once.

They are not what makes money safe — the version check in PostgreSQL is — so a lost lock
costs at worst one duplicate PSP *inquiry*, never a duplicate transition.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from redis.lock import Lock

from connxt.redis import get_redis
from connxt.settings import get_settings


class LockBusy(Exception):
    """Another worker holds the transaction: re-schedule, never block."""


@contextmanager
def named_lock(name: str) -> Iterator[Lock]:
    lock = get_redis().lock(f"lock:{name}", timeout=get_settings().lock_ttl_seconds, blocking=False)
    if not lock.acquire():
        raise LockBusy(name)
    try:
        yield lock
    finally:
        # Token-checked: releasing a lock that expired and was taken by another is a no-op.
        try:
            lock.release()
        except Exception:  # LockNotOwnedError or a Redis blip: the TTL frees it anyway
            pass


def transaction_lock(txn_id: str):
    return named_lock(f"txn:{txn_id}")
