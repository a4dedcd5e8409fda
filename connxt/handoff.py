"""The initiation outcome, handed from the worker to the ingress request that waits for it.

The worker publishes the transaction id on one Redis channel once the outcome is committed;
each ingress process holds one subscription for all of its waiting requests (not a
connection per request). A waiter is registered before its transaction is even committed,
so a signal can never come before someone listens for it. The message is only a wake-up:
the request then reads the transaction from PostgreSQL, the record of truth. A signal lost
with a Redis restart costs nothing but time: after re-subscribing, every waiter looks at
PostgreSQL again, and none waits past its own bound.
"""

from __future__ import annotations

import asyncio
import contextlib

import redis
import redis.asyncio as aioredis
import structlog

from connxt.redis import get_redis
from connxt.settings import get_settings

log = structlog.get_logger()


def outcome_channel() -> str:
    # Pub/sub channels span Redis's numbered databases: the prefix keeps deployments apart.
    return f"{get_settings().broker_key_prefix}connxt:outcomes"


def signal_outcome(txn_id: str) -> None:
    try:
        get_redis().publish(outcome_channel(), txn_id)
    except redis.RedisError:
        pass  # the waiting request answers from PostgreSQL at its time limit


class Waiter:
    """One waiting request: woken by the worker's signal, or asked to look again."""

    __slots__ = ("event", "signalled")

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.signalled = False  # the worker finished its attempt (decided or not)


class OutcomeWaiter:
    """One subscription per ingress process, fanning wake-ups out to waiting requests."""

    def __init__(self, redis_url: str, channel: str):
        self._url = redis_url
        self._channel = channel
        self._waiting: dict[str, Waiter] = {}
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._listen())

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            # Bounded: a client library that turns the cancellation into its own error
            # must not hold the process's shutdown.
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._task, 2)

    def expect(self, txn_id: str) -> Waiter:
        """Register before the commit; ``forget`` when done."""
        waiter = self._waiting[txn_id] = Waiter()
        return waiter

    def forget(self, txn_id: str) -> None:
        self._waiting.pop(txn_id, None)

    async def wait(self, waiter: Waiter, timeout: float) -> None:
        """Until signalled (or asked to look again), at most ``timeout`` seconds."""
        if timeout > 0 and not waiter.signalled:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter.event.wait(), timeout)
        waiter.event.clear()

    def _wake_all(self) -> None:
        for waiter in self._waiting.values():
            waiter.event.set()

    async def _listen(self) -> None:
        while not self._closing:
            client = aioredis.Redis.from_url(
                self._url, socket_connect_timeout=2, socket_keepalive=True
            )
            try:
                async with client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self._channel)
                    # Anything signalled while we were not subscribed is unknown: look again.
                    self._wake_all()
                    async for message in pubsub.listen():
                        waiter = self._waiting.get(message["data"].decode())
                        if waiter is not None:
                            waiter.signalled = True
                            waiter.event.set()
            except (redis.RedisError, OSError) as exc:
                if self._closing:
                    return
                log.warning("handoff.subscription_lost", error=type(exc).__name__)
                await asyncio.sleep(0.5)
            finally:
                await client.aclose()
