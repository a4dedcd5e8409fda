"""What an ingress process holds while it serves: the async connection pool, the group
commits that share it, and the one subscription that wakes waiting requests.

Made by the app's lifespan and reached from a request as ``runtime(request)``.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from fastapi import FastAPI, Request

from api_gateway import drain
from connxt.handoff import OutcomeWaiter, outcome_channel
from connxt.settings import Settings, get_settings
from storage.aio import open_ingress_pool
from storage.group_commit import BatchWriter, GroupCommit
from storage.inbox_writer import InboxWriter, NewWebhook, Received
from storage.transaction_writer import NewTransaction, Stored, TransactionWriter

if TYPE_CHECKING:
    from storage.aio import IngressPool

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class Runtime:
    pool: IngressPool
    transactions: GroupCommit[NewTransaction, Stored]
    webhooks: GroupCommit[NewWebhook, Received]
    outcomes: OutcomeWaiter


def _group_commit(
    settings: Settings, pool: IngressPool, writer: BatchWriter[T, R]
) -> GroupCommit[T, R]:
    return GroupCommit(
        pool,
        writer,
        max_batch=settings.group_commit_max_batch,
        concurrency=settings.group_commit_concurrency,
        deadline_seconds=settings.group_commit_deadline_seconds,
    )


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    # Closed in the reverse order, each whatever the one before it raised: a Redis that
    # fails the waiter's close must not leave the pool reconnecting for good.
    async with AsyncExitStack() as stack:
        pool = await open_ingress_pool(settings)
        stack.push_async_callback(pool.close, timeout=5)
        first_inquiry = settings.inquiry_schedule[0]
        transactions = _group_commit(settings, pool, TransactionWriter(first_inquiry))
        webhooks = _group_commit(settings, pool, InboxWriter())
        stack.push_async_callback(webhooks.close)
        stack.push_async_callback(transactions.close)
        outcomes = OutcomeWaiter(settings.redis_url, outcome_channel())
        outcomes.start()
        stack.push_async_callback(outcomes.close)
        drain.on_stop(outcomes.answer_all_now)
        stack.callback(drain.off_stop, outcomes.answer_all_now)
        app.state.runtime = Runtime(
            pool=pool, transactions=transactions, webhooks=webhooks, outcomes=outcomes
        )
        # Everything made so far lives as long as the process: out of the collector's sight,
        # a full collection no longer walks it (which shows as latency spikes under load).
        gc.freeze()
        yield


def runtime(request: Request) -> Runtime:
    return request.app.state.runtime
