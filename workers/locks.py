"""Per-transaction Redis locks: they keep two workers from calling a PSP at once.

They are not what makes money safe — the version check in PostgreSQL is, and connectors
make a repeated initiation find the first payment — so a lost lock costs at worst a
duplicate PSP call that changes nothing. The TTL is short so a killed worker's lock frees
itself quickly; while the holder is alive a keeper thread extends it, so a slow PSP call
never outlives its lock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from redis.exceptions import LockNotOwnedError
from redis.lock import Lock

from connxt.metrics import LOCK_BUSY
from connxt.redis import get_redis
from connxt.settings import get_settings


class LockBusy(Exception):
    """Another worker holds the transaction: re-schedule, never block."""


def _keep_alive(lock: Lock, ttl: int, stop: threading.Event) -> None:
    while not stop.wait(ttl / 3):
        try:
            lock.reacquire()
        except LockNotOwnedError:
            return  # expired and taken over: nothing left to extend
        except redis.RedisError:
            continue  # a blip: try again before the TTL runs out


@contextmanager
def named_lock(name: str) -> Iterator[Lock]:
    ttl = get_settings().lock_ttl_seconds
    # thread_local=False: the keeper thread must see the token to extend the lock.
    lock = get_redis().lock(f"lock:{name}", timeout=ttl, blocking=False, thread_local=False)
    if not lock.acquire():
        LOCK_BUSY.inc()
        raise LockBusy(name)
    stop = threading.Event()
    keeper = threading.Thread(target=_keep_alive, args=(lock, ttl, stop), daemon=True)
    keeper.start()
    try:
        yield lock
    finally:
        stop.set()
        keeper.join(timeout=1)
        # Token-checked: releasing a lock that expired and was taken by another is a no-op.
        try:
            lock.release()
        except redis.RedisError:  # LockNotOwnedError or a blip: the TTL frees it anyway
            pass


def transaction_lock(txn_id: str):
    return named_lock(f"txn:{txn_id}")
