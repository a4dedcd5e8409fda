"""Liveness, readiness and metrics: outside /connxt/v2, no token."""

from __future__ import annotations

import asyncio
from typing import Literal

import redis
from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from pydantic import Field

from api_gateway.envelope import error, ok
from api_gateway.openapi import ResponseModel, answers
from api_gateway.runtime import runtime
from connectors.registry import queue_depths
from connxt.metrics import QueueDepth
from connxt.redis import get_async_redis

router = APIRouter(tags=["Operations"])


class Liveness(ResponseModel):
    status: Literal["up"]


class Readiness(ResponseModel):
    database: Literal["ok"]
    redis: str = Field(description="`ok`, or why Redis does not answer (not cause to be unready)")


# Each readiness check's bound: well inside the probe's own timeout (deploy/k8s/api.yaml).
READY_CHECK_SECONDS = 1.0


@router.get("/healthz", summary="The process is up", responses=answers(data=Liveness, ok="Up"))
def healthz():
    return ok({"status": "up"})


async def _database(request: Request) -> str:
    try:
        async with asyncio.timeout(READY_CHECK_SECONDS):
            async with runtime(request).pool.connection() as conn:
                await conn.execute("SELECT 1")
        return "ok"
    except Exception as exc:  # noqa: BLE001 (any failure means not ready; its name is the answer)
        return type(exc).__name__


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
        503, data=Readiness, ok="Ready", e503="Not ready: PostgreSQL does not answer"
    ),
)
async def readyz(request: Request):
    """Ready while this process's own PostgreSQL connections answer, since that is what
    accepting a request durably takes. Redis is reported but does not decide: without it
    Step 3 and PSP webhooks are still stored (their messages wait in the outbox) and a
    waiting request answers 202 at its bound. Taking every API pod out of service because
    Redis is away would turn a degraded service into none. Each check is bounded."""
    database, redis_state = await asyncio.gather(_database(request), _redis())
    if database != "ok":
        return error(503, "Not ready", [{"field": "database", "message": database}])
    return ok({"database": database, "redis": redis_state})


# Read from the broker (Redis or RabbitMQ) at each scrape.
REGISTRY.register(QueueDepth(queue_depths))


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
def metrics():
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
