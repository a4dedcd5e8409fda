"""Liveness, readiness and metrics: outside /connxt/v2, no token."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal

import redis
import structlog
from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import Field

from api_gateway.drain import is_draining
from api_gateway.envelope import error, ok
from api_gateway.openapi import ResponseModel, answers
from api_gateway.runtime import runtime
from connxt.redis import get_async_redis
from connxt.secrets import key_ring
from connxt.settings import get_settings
from storage.aio import ping
from storage.db import session_scope
from storage.psp_signing import unsigned_accounts

log = structlog.get_logger()
router = APIRouter(tags=["Operations"])


class Liveness(ResponseModel):
    status: Literal["up"]


class Readiness(ResponseModel):
    database: Literal["ok"]
    redis: str = Field(description="`ok`, or why Redis does not answer (not cause to be unready)")
    unsignedPspAccounts: int | None = Field(
        description="In production, the PSP accounts without a webhook signing key, whose "
        "webhooks are refused until one is added (`connxt psps check` lists them); not cause "
        "to be unready. Null in development, or when they could not be counted in time."
    )


# Each readiness check's bound: well inside the probe's own timeout (deploy/k8s/api.yaml).
READY_CHECK_SECONDS = 1.0


@router.get("/healthz", summary="The process is up", responses=answers(data=Liveness, ok="Up"))
def healthz():
    return ok({"status": "up"})


# Pings given up at the bound and still ending (kept referenced until they do).
_abandoned: set[asyncio.Task] = set()


async def _database(request: Request) -> str:
    """A round trip on one of the pool's connections, given up at the bound without
    waiting for it to end: a query cancelled mid-flight makes psycopg ask the server to
    cancel it and wait for that (up to 10 s), which over a partition never answers either,
    so awaiting the cancellation would make the probe as late as the partition is silent
    (measured in the fleet: 5-6 s, failing the balancer's 2 s check instead of answering)."""
    pinging = asyncio.ensure_future(ping(runtime(request).pool))
    done, _ = await asyncio.wait({pinging}, timeout=READY_CHECK_SECONDS)
    if not done:
        pinging.cancel()
        _abandoned.add(pinging)
        pinging.add_done_callback(_forget)
        return "TimeoutError"
    failed = pinging.exception()  # any failure means not ready; its name is the answer
    return "ok" if failed is None else type(failed).__name__


def _forget(task: asyncio.Task) -> None:
    _abandoned.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: how an abandoned ping ended is no longer anyone's


async def _redis() -> str:
    try:
        async with asyncio.timeout(READY_CHECK_SECONDS):
            await get_async_redis().ping()
        return "ok"
    except (redis.RedisError, OSError, TimeoutError) as exc:
        return type(exc).__name__


@router.get(
    "/readyz",
    summary="Ready while this process can store requests (PostgreSQL); Redis is reported",
    responses=answers(
        503,
        data=Readiness,
        ok="Ready",
        e503="Not ready: PostgreSQL does not answer, or the process is draining",
    ),
)
async def readyz(request: Request):
    """Ready while this process's own PostgreSQL connections answer, since that is what
    accepting a request durably takes. Redis is reported but does not decide: without it
    Step 3 and PSP webhooks are still stored (their messages wait in the outbox) and a
    waiting request answers 202 at its bound. Taking every API pod out of service because
    Redis is away would turn a degraded service into none. Each check is bounded. In
    production the PSP accounts without a webhook signing key are counted beside them. A
    process that is draining (SIGTERM, api_gateway/drain.py) is not ready: the balancer
    moves away while it still serves."""
    if is_draining():
        return error(503, "Not ready", [{"field": "process", "message": "draining"}])
    database, redis_state = await asyncio.gather(_database(request), _redis())
    if database != "ok":
        return error(503, "Not ready", [{"field": "database", "message": database}])
    unsigned = await _unsigned_psp_accounts(request)
    return ok({"database": database, "redis": redis_state, "unsignedPspAccounts": unsigned})


# Counted at most once a minute per process, one count at a time: it opens the credential
# of every account whose connector takes a key (about 0.1 s for 5,000 accounts).
UNSIGNED_COUNT_SECONDS = 60.0


async def _unsigned_psp_accounts(request: Request) -> int | None:
    """Reported, never deciding: one account without its key must not take every API
    host out of the balancer (its webhooks are refused either way). A count slower than
    the probe's bound is still kept for the next probes, never started again meanwhile."""
    if not get_settings().is_production:
        return None
    state = request.app.state
    counted = getattr(state, "unsigned_psp_accounts", None)
    if counted is None or counted[0] <= time.monotonic():
        counting = getattr(state, "unsigned_psp_counting", None)
        if counting is None or counting.done():
            counting = state.unsigned_psp_counting = asyncio.ensure_future(_count_unsigned(state))
        try:
            await asyncio.wait_for(asyncio.shield(counting), READY_CHECK_SECONDS)
        except TimeoutError:
            pass  # this probe reports what was counted before, if anything
        counted = getattr(state, "unsigned_psp_accounts", None)
    return None if counted is None else counted[1]


async def _count_unsigned(state: Any) -> None:
    try:
        count: int | None = await run_in_threadpool(_count_unsigned_now)
    except Exception as exc:  # a report, not a check: say so, try again later
        log.warning("readyz.unsigned_psp_accounts_unknown", error=type(exc).__name__)
        count = None
    else:
        if count:
            log.warning("readyz.unsigned_psp_accounts", count=count)
    state.unsigned_psp_accounts = (time.monotonic() + UNSIGNED_COUNT_SECONDS, count)


def _count_unsigned_now() -> int:
    with session_scope() as session:
        return len(unsigned_accounts(session, key_ring()))


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
def metrics():
    """On the public port only with CONNXT_PUBLIC_METRICS; scrapers use ``connxt api
    --metrics-port`` (commands/processes.py), a listener clients never reach."""
    if not get_settings().public_metrics:
        return error(404, "Not found")
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
