"""Settlement reconciliation for merchants: ask for a run of one PSP account and day, read
runs and their differences. Every query is the tenant's own."""

from __future__ import annotations

from datetime import date, datetime
from functools import partial
from typing import TYPE_CHECKING

from fastapi import APIRouter, Depends, Header, Query, Request

from api_gateway import cursors, idempotency
from api_gateway.auth import Tenant, current_tenant
from api_gateway.envelope import ok
from api_gateway.errors import NotFound
from api_gateway.openapi import answers, enveloped
from api_gateway.reconciliation import schemas, service
from storage.db import session_scope
from storage.recon import differences, runs
from storage.recon.views import difference_view, run_view
from storage.recon.vocabulary import Class

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

router = APIRouter(tags=["Reconciliation"])

QUEUED_MESSAGE = "Reconciliation run queued"


def _scope(tenant: Tenant) -> tuple[str, str]:
    return tenant.brand_id, tenant.environment_id


def _queue(tenant: Tenant, body: schemas.RunCreate):
    with session_scope() as session:
        run = service.queue_run(session, tenant, body.pspId, body.date)
        view = run_view(run)
    return ok(view, QUEUED_MESSAGE, status_code=202)


def _day(text: str) -> date:
    return datetime.strptime(text, "%Y-%m-%d").date()


def _position(text: str) -> int:
    if not text.isdigit():
        raise ValueError(text)
    return int(text)


def _run_or_404(session: Session, tenant: Tenant, run_id: str) -> runs.Run:
    run = runs.get_run(session, _scope(tenant), run_id)
    if run is None:
        raise NotFound("Reconciliation run not found")
    return run


def _read_queued(tenant: Tenant, run_id: str):
    with session_scope() as session:
        view = run_view(_run_or_404(session, tenant, run_id))
    return ok(view, QUEUED_MESSAGE, status_code=202)


@router.post(
    "/reconciliation/runs",
    summary="Reconcile one PSP account's settlement day (queued for the reconcile lane)",
    status_code=202,
    responses={
        **answers(
            400,
            401,
            404,
            409,
            413,
            422,
            503,
            e400="Invalid request data, a day that has not begun at the PSP, or a PSP without "
            "settlement reports: each problem in `errors[]`",
            e404="No PSP account of that id in the caller's environment",
        ),
        202: {
            "model": enveloped(schemas.Run, "ReconciliationRunQueued"),
            "description": "Queued: read it with `GET /reconciliation/runs/{runId}` until "
            "COMPLETED (or FAILED, with the reason)",
        },
    },
)
async def create_run(
    request: Request,
    body: schemas.RunCreate,
    tenant: Tenant = Depends(current_tenant),
    idempotency_key: str | None = Header(default=None, alias="Idempotency-Key"),
):
    return await idempotency.post_once(
        request,
        tenant.environment_id,
        idempotency_key,
        partial(_queue, tenant, body),
        partial(_read_queued, tenant),
    )


@router.get(
    "/reconciliation/runs",
    summary="Reconciliation runs, newest day first",
    responses=answers(400, 401, 503, data=schemas.Runs),
)
def list_runs(
    tenant: Tenant = Depends(current_tenant),
    pspId: str | None = Query(default=None, max_length=40),
    date: date | None = Query(default=None),
    limit: int = Query(default=50, ge=1, le=200),
    cursor: str | None = Query(default=None, max_length=300),
):
    before = None
    if cursor:
        before = cursors.decode(cursor, _day, datetime.fromisoformat, str)
    with session_scope() as session:
        found = runs.list_runs(
            session, _scope(tenant), limit=limit + 1, psp_id=pspId, day=date, before=before
        )
        items = [run_view(run) for run in found[:limit]]
    next_cursor = None
    if len(found) > limit:
        last = found[limit - 1]
        next_cursor = cursors.encode(str(last.day), last.created_at.isoformat(), last.id)
    return ok({"items": items, "nextCursor": next_cursor})


@router.get(
    "/reconciliation/runs/{run_id}",
    summary="One reconciliation run and its summary",
    responses=answers(400, 401, 404, 503, data=schemas.Run),
)
def get_run(run_id: str, tenant: Tenant = Depends(current_tenant)):
    with session_scope() as session:
        return ok(run_view(_run_or_404(session, tenant, run_id)))


@router.get(
    "/reconciliation/runs/{run_id}/differences",
    summary="What a reconciliation run found not matched, both sides of each",
    responses=answers(400, 401, 404, 503, data=schemas.Differences),
)
def list_differences(
    run_id: str,
    tenant: Tenant = Depends(current_tenant),
    klass: Class | None = Query(default=None, alias="class"),
    limit: int = Query(default=100, ge=1, le=500),
    cursor: str | None = Query(default=None, max_length=100),
):
    after = 0
    if cursor:
        (after,) = cursors.decode(cursor, _position)
    with session_scope() as session:
        _run_or_404(session, tenant, run_id)
        found = differences.of_run(
            session,
            _scope(tenant),
            run_id,
            limit=limit + 1,
            after_id=after,
            klass=klass.value if klass else None,
        )
    items = [difference_view(d) for d in found[:limit]]
    next_cursor = cursors.encode(str(found[limit - 1].id)) if len(found) > limit else None
    return ok({"items": items, "nextCursor": next_cursor})
