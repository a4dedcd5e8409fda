"""Liveness, readiness and metrics: outside /connxt/v2, no token."""

from __future__ import annotations

import redis
from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, Gauge, generate_latest
from sqlalchemy import text

from api_gateway.envelope import error, ok
from connxt.redis import get_redis
from storage.db import get_engine
from workers.queue_depth import queue_depths

router = APIRouter(tags=["Operations"])


@router.get("/healthz", summary="The process is up")
def healthz():
    return ok({"status": "up"})


@router.get("/readyz", summary="PostgreSQL and Redis are reachable")
def readyz():
    checks: dict[str, str] = {}
    try:
        with get_engine().connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # any failure means not ready; the reason is in the answer
        checks["database"] = type(exc).__name__
    try:
        get_redis().ping()
        checks["redis"] = "ok"
    except redis.RedisError as exc:
        checks["redis"] = type(exc).__name__
    if all(v == "ok" for v in checks.values()):
        return ok(checks)
    return error(
        503, "Not ready", [{"field": k, "message": v} for k, v in checks.items() if v != "ok"]
    )


QUEUE_DEPTH = Gauge("connxt_queue_depth", "Messages waiting in each worker queue", ["queue"])


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
def metrics():
    try:
        for queue, depth in queue_depths().items():
            QUEUE_DEPTH.labels(queue).set(depth)
    except redis.RedisError:
        pass  # the other metrics are still worth serving
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
