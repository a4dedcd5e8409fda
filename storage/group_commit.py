"""Group commit: many concurrent requests share one statement and one commit.

A caller hands in its item and waits; the item rides in the next batch, and the caller is
answered only after that batch's statement has committed, so an answer still means
durable. Batches form by themselves: while ``concurrency`` batches are committing, new
items wait and join the next one, so under load a batch carries everything that arrived
during one commit, and when idle an item goes at once.

A batch is one autocommit statement: it commits entirely or not at all. When the
connection is lost in the middle, whether it committed is unknown; ``BatchWriter.settle``
looks for the batch's rows on a fresh connection before trying again, so an item is
never stored twice and never reported refused when it was stored. One item the database
refuses (a value it cannot store) fails alone: the batch is retried item by item.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Generic, Protocol, TypeVar

import psycopg
import structlog
from psycopg_pool import PoolTimeout

from connxt.metrics import GROUP_COMMIT_BATCH
from storage.aio import IngressConnection, IngressPool

log = structlog.get_logger()

T = TypeVar("T")
R = TypeVar("R")
# A writer only takes items in: one that writes any object may serve items of one kind.
T_contra = TypeVar("T_contra", contravariant=True)


class StoreUnavailable(Exception):
    """The database could not be reached (or the outcome settled) before the deadline."""


class BatchWriter(Protocol[T_contra, R]):
    """How one kind of item is written: one statement for a batch, and how to tell
    afterwards whether a batch whose connection was lost had committed."""

    name: str

    async def write(self, conn: IngressConnection, items: Sequence[T_contra]) -> list[R]:
        """Store ``items`` in one statement; one result per item, in order."""

    async def settle(self, conn: IngressConnection, items: Sequence[T_contra]) -> list[R] | None:
        """After a lost connection: the results if the batch is found stored, else None
        (it did not commit, and ``write`` may run again)."""


class GroupCommit(Generic[T, R]):
    def __init__(
        self,
        pool: IngressPool,
        writer: BatchWriter[T, R],
        *,
        max_batch: int,
        concurrency: int,
        deadline_seconds: float,
    ):
        self._pool = pool
        self._writer = writer
        self._max_batch = max_batch
        self._concurrency = concurrency
        self._deadline = deadline_seconds
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._running = 0
        self._tasks: set[asyncio.Task[None]] = set()
        # Connections kept between batches (one per batch in flight): checking one out of
        # the pool and back for every batch is work a busy ingress does thousands of times.
        self._idle: list[IngressConnection] = []

    async def submit(self, item: T) -> R:
        """The item's result once its batch has committed; raises StoreUnavailable."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        self._start_flushes()
        return await future

    def _start_flushes(self) -> None:
        while self._pending and self._running < self._concurrency:
            self._running += 1
            task = asyncio.create_task(self._flush())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _flush(self) -> None:
        # The batch is taken when the task first runs, not when it was created: requests
        # that arrived in the same turn of the event loop ride along.
        batch = self._pending[: self._max_batch]
        del self._pending[: self._max_batch]
        try:
            if batch:
                await self._commit(batch)
        finally:
            self._running -= 1
            self._start_flushes()

    async def _commit(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        items = [item for item, _ in batch]
        GROUP_COMMIT_BATCH.labels(self._writer.name).observe(len(items))
        try:
            results: list[R | BaseException] = list(await self._write(items))
        except psycopg.Error as exc:
            if len(items) == 1:
                results = [exc]
            else:
                # One item the database refuses must not take the others down with it.
                log.warning("group_commit.split", writer=self._writer.name, size=len(items))
                results = [await self._write_alone(item) for item in items]
        except BaseException as exc:  # StoreUnavailable, or a bug: every caller hears it
            results = [exc] * len(items)
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():  # the caller went away; its item is stored all the same
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def _write_alone(self, item: T) -> R | BaseException:
        try:
            return (await self._write([item]))[0]
        except BaseException as exc:
            return exc

    async def _write(self, items: list[T]) -> list[R]:
        """Write, riding out lost connections until the deadline; never writes twice."""
        deadline = time.monotonic() + self._deadline
        maybe_committed = False
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StoreUnavailable(self._writer.name)
            conn = None
            try:
                conn = self._idle.pop() if self._idle else await self._pool.getconn(remaining)
                if maybe_committed:
                    settled = await self._writer.settle(conn, items)
                    if settled is not None:
                        self._idle.append(conn)
                        return settled
                maybe_committed = True
                results = await self._writer.write(conn, items)
                self._idle.append(conn)
                return results
            except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
                log.warning(
                    "group_commit.retry", writer=self._writer.name, error=type(exc).__name__
                )
                await asyncio.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
            except psycopg.Error:
                if conn is not None:
                    self._idle.append(conn)  # a refused value: the connection is fine
                raise
            finally:
                if conn is not None and conn not in self._idle:
                    # Broken (or of unknown state): the pool checks it and replaces it.
                    await self._pool.putconn(conn)

    async def close(self) -> None:
        """Give the kept connections back to the pool (before it closes)."""
        while self._idle:
            await self._pool.putconn(self._idle.pop())
