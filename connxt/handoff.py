"""The initiation outcome, handed from the worker to the ingress request that waits for it.

The worker publishes the transaction id on one Redis channel once the outcome is committed;
each ingress process holds one subscription for all of its waiting requests (not a
connection per request). A waiter is registered before its transaction is even committed,
so a signal can never come before someone listens for it. The message is only a wake-up:
the request then reads the transaction from PostgreSQL, the record of truth. A signal lost
with a Redis restart costs nothing but time: after re-subscribing, every waiter looks at
PostgreSQL again, and none waits past its own bound.

The subscription never waits on Redis without a bound either: each read waits at most a
heartbeat, a PING goes out every heartbeat, and a connection that has answered nothing,
not even the PONG, for three heartbeats is dropped and made again. A Redis that hangs (or a
connection a network silently lost) costs wake-ups for seconds, not for good.
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
    signal_outcomes([txn_id])


def signal_outcomes(txn_ids: list[str]) -> None:
    """One message for a batch: the ids, space-separated (ids never contain a space)."""
    if not txn_ids:
        return
    try:
        get_redis().publish(outcome_channel(), " ".join(txn_ids))
    except redis.RedisError:
        pass  # the waiting request answers from PostgreSQL at its time limit


class Waiter:
    """One waiting request: woken by the worker's signal, or asked to look again."""

    __slots__ = ("event", "signalled")

    def __init__(self) -> None:
        self.event = asyncio.Event()
        # The worker finished its attempt (decided or not), or the process is stopping:
        # either way, answer from the row now.
        self.signalled = False


HEARTBEAT_SECONDS = 5.0


class Silent(redis.TimeoutError):
    """The subscription's connection answered nothing for three heartbeats."""


class OutcomeWaiter:
    """One subscription per ingress process, fanning wake-ups out to waiting requests."""

    def __init__(self, redis_url: str, channel: str, heartbeat: float = HEARTBEAT_SECONDS):
        self._url = redis_url
        self._channel = channel
        self._heartbeat = heartbeat
        self._waiting: dict[str, Waiter] = {}
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._answer_now = False

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
        waiter.signalled = self._answer_now
        return waiter

    def forget(self, txn_id: str) -> None:
        self._waiting.pop(txn_id, None)

    async def wait(self, waiter: Waiter, timeout: float) -> None:
        """Until signalled (or asked to look again), at most ``timeout`` seconds."""
        if timeout > 0 and not waiter.signalled:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter.event.wait(), timeout)
        waiter.event.clear()

    def answer_all_now(self) -> None:
        """The process is stopping: every waiting request answers from its row now (a 202
        where the outcome is not known yet) rather than at its bound, and so does every one
        that starts waiting from here on."""
        self._answer_now = True
        for waiter in self._waiting.values():
            waiter.signalled = True
            waiter.event.set()

    def _wake_all(self) -> None:
        for waiter in self._waiting.values():
            waiter.event.set()

    async def _listen(self) -> None:
        while not self._closing:
            client = aioredis.Redis.from_url(
                self._url,
                socket_connect_timeout=2,
                socket_timeout=self._heartbeat * 2,  # connecting, subscribing, PING
                socket_keepalive=True,
            )
            try:
                async with client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self._channel)
                    # Anything signalled while we were not subscribed is unknown: look again.
                    self._wake_all()
                    await self._receive(pubsub)
            except (redis.RedisError, OSError) as exc:
                if self._closing:
                    return
                log.warning("handoff.subscription_lost", error=type(exc).__name__)
                await asyncio.sleep(0.5)
            finally:
                await client.aclose()

    async def _receive(self, pubsub: aioredis.client.PubSub) -> None:
        """Wake the waiters the worker signals, until the connection fails or goes silent."""
        loop = asyncio.get_running_loop()
        heard = pinged = loop.time()
        while not self._closing:
            message = await pubsub.get_message(
                ignore_subscribe_messages=True, timeout=self._heartbeat
            )
            now = loop.time()
            if message is not None:
                heard = now  # a signal or the PONG: the connection is alive
                if message["type"] == "message":
                    for txn_id in message["data"].decode().split():
                        waiter = self._waiting.get(txn_id)
                        if waiter is not None:
                            waiter.signalled = True
                            waiter.event.set()
            if now - heard > 3 * self._heartbeat:
                raise Silent("no answer from Redis for three heartbeats")
            if now - pinged >= self._heartbeat:
                await pubsub.ping()
                pinged = now
