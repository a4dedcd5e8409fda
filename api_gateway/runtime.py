"""What an ingress process holds while it serves: the async connection pool, the group
commits that share it, and the one subscription that wakes waiting requests.

Made by the app's lifespan and reached from a request as ``runtime(request)``.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import structlog
from fastapi import FastAPI, Request
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from connxt.handoff import OutcomeWaiter, outcome_channel
from connxt.settings import Settings, get_settings
from storage.aio import ingress_pool
from storage.group_commit import GroupCommit
from storage.inbox_batch import InboxWriter, NewWebhook, Received
from storage.transaction_batch import NewTransaction, Stored, TransactionWriter

log = structlog.get_logger()


@dataclass
class Runtime:
    pool: AsyncConnectionPool
    transactions: GroupCommit[NewTransaction, Stored]
    webhooks: GroupCommit[NewWebhook, Received]
    outcomes: OutcomeWaiter


def _group_commit(settings: Settings, pool: AsyncConnectionPool, writer) -> GroupCommit:
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
    pool = ingress_pool(settings)
    try:
        await pool.open(wait=True, timeout=5)
    except PoolTimeout:
        # The ingress still starts (answering 503 for writes, /readyz not ready) while
        # PostgreSQL is away. psycopg closes a pool that did not fill in time, so a fresh one
        # is opened that fills in the background as soon as PostgreSQL answers.
        log.warning("ingress.database_not_ready")
        pool = ingress_pool(settings)
        await pool.open(wait=False)
    outcomes = OutcomeWaiter(settings.redis_url, outcome_channel())
    outcomes.start()
    app.state.runtime = Runtime(
        pool=pool,
        transactions=_group_commit(settings, pool, TransactionWriter(settings.inquiry_schedule[0])),
        webhooks=_group_commit(settings, pool, InboxWriter()),
        outcomes=outcomes,
    )
    # Everything made so far lives as long as the process: out of the collector's sight, a
    # full collection no longer walks it (which shows as latency spikes under load).
    gc.freeze()
    try:
        yield
    finally:
        await outcomes.close()
        for committer in (app.state.runtime.transactions, app.state.runtime.webhooks):
            await committer.close()
        await pool.close(timeout=5)


def runtime(request: Request) -> Runtime:
    return request.app.state.runtime
