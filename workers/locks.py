"""Per-transaction Redis locks: they keep two workers from calling a PSP at once.

They are not what makes money safe — the version check in PostgreSQL is, and connectors
make a repeated initiation find the first payment — so a lost lock costs at worst a
duplicate PSP call that changes nothing. The TTL is short so a killed worker's lock frees
itself quickly; while the holder is alive one keeper thread per process extends every lock
the process holds, so a slow PSP call never outlives its lock. A batch takes and frees all
of its locks in one round trip each way.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import redis

from connxt.metrics import LOCK_BUSY
from connxt.redis import get_redis
from connxt.settings import get_settings

# Token-checked, so a lock that expired and was taken by another is never touched.
_EXTEND = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


class LockBusy(Exception):
    """Another worker holds the transaction: re-schedule, never block."""


def _key(name: str) -> str:
    return f"lock:{name}"


class _Keeper:
    """The process's held locks, extended every third of their TTL by one thread."""

    def __init__(self) -> None:
        self._held: dict[str, str] = {}  # key -> token
        self._guard = threading.Lock()
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._interval = 0.0  # seconds between extensions, a third of the TTL

    def add(self, keys: Sequence[str], token: str) -> None:
        with self._guard:
            self._held.update(dict.fromkeys(keys, token))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="lock-keeper", daemon=True)
                self._thread.start()
            elif get_settings().lock_ttl_seconds / 3 < self._interval:
                self._wake.set()  # a shorter TTL than the keeper sleeps for: wake it now

    def discard(self, keys: Sequence[str]) -> None:
        with self._guard:
            for key in keys:
                self._held.pop(key, None)

    def _run(self) -> None:
        while True:
            self._interval = get_settings().lock_ttl_seconds / 3
            self._wake.wait(self._interval)
            self._wake.clear()
            ttl_ms = get_settings().lock_ttl_seconds * 1000
            with self._guard:
                held = list(self._held.items())
            if not held:
                continue
            try:
                pipe = get_redis().pipeline(transaction=False)
                for key, token in held:
                    pipe.eval(_EXTEND, 1, key, token, ttl_ms)
                kept = pipe.execute()
            except redis.RedisError:
                continue  # a blip: try again before the TTL runs out
            # Expired and taken over: nothing left to extend (the version check still guards).
            self.discard([key for (key, _), ok in zip(held, kept, strict=True) if not ok])


_keeper = _Keeper()


@contextmanager
def hold_many(names: Sequence[str]) -> Iterator[tuple[list[str], list[str]]]:
    """Take the free ones of ``names``' locks: yields (held, busy), frees the held on exit."""
    ttl_ms = get_settings().lock_ttl_seconds * 1000
    token = secrets.token_hex(16)
    client = get_redis()
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.set(_key(name), token, nx=True, px=ttl_ms)
    taken = pipe.execute()
    held = [name for name, ok in zip(names, taken, strict=True) if ok]
    busy = [name for name, ok in zip(names, taken, strict=True) if not ok]
    if busy:
        LOCK_BUSY.inc(len(busy))
    keys = [_key(name) for name in held]
    _keeper.add(keys, token)
    try:
        yield held, busy
    finally:
        _keeper.discard(keys)
        try:
            pipe = client.pipeline(transaction=False)
            for key in keys:
                pipe.eval(_RELEASE, 1, key, token)
            pipe.execute()
        except redis.RedisError:  # the TTL frees them anyway
            pass


@contextmanager
def named_lock(name: str) -> Iterator[None]:
    with hold_many([name]) as (held, _busy):
        if not held:
            raise LockBusy(name)
        yield


def transaction_lock(txn_id: str):
    return named_lock(f"txn:{txn_id}")


def transaction_locks(txn_ids: Sequence[str]):
    """``hold_many`` for transactions: yields (held txn ids, busy txn ids)."""
    return _names_back(hold_many([f"txn:{t}" for t in txn_ids]))


@contextmanager
def _names_back(held_busy) -> Iterator[tuple[list[str], list[str]]]:
    with held_busy as (held, busy):
        yield [n.removeprefix("txn:") for n in held], [n.removeprefix("txn:") for n in busy]
