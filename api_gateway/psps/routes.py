"""HTTP for PSP accounts: Step 2 and the management endpoints around it."""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter, Depends, Header, Request

from api_gateway import idempotency
from api_gateway.auth import Tenant, current_tenant
from api_gateway.envelope import ok
from api_gateway.openapi import answers
from api_gateway.psps import cache, service
from api_gateway.psps.schemas import Psp, PspCreate, Psps, PspUpdate
from connxt.secrets import key_ring
from storage import psps as repo
from storage.db import session_scope

router = APIRouter(tags=["PSPs"])


def _create(tenant: Tenant, body: PspCreate):
    with session_scope() as session:
        data = service.create_psp(session, key_ring(), tenant, body)
    cache.created(data["id"])  # committed: its id may have been refused as unknown before
    return ok(data)


def _read(tenant: Tenant, psp_id: str):
    with session_scope() as session:
        return ok(service.present(session, service.get_psp_or_404(session, tenant, psp_id)))


@router.post(
    "/psps/external",
    summary="Step 2: create a PSP with its operations",
    responses=answers(
        400,
        401,
        409,
        413,
        422,
        503,
        data=Psp,
        e409="A PSP of this name exists for the flow target, or a request with this "
        "`Idempotency-Key` is still in progress",
    ),
)
async def create_psp(
    request: Request,
    body: PspCreate,
    tenant: Tenant = Depends(current_tenant),
    idempotency_key: str | None = Header(default=None, alias="Idempotency-Key"),
):
    return await idempotency.post_once(
        request,
        tenant.environment_id,
        idempotency_key,
        partial(_create, tenant, body),
        partial(_read, tenant),
    )


@router.get(
    "/psps",
    summary="List the PSPs of the caller's environment",
    responses=answers(401, 503, data=Psps),
)
def list_psps(tenant: Tenant = Depends(current_tenant)):
    with session_scope() as session:
        items = service.present_all(
            session, repo.list_psps(session, tenant.brand_id, tenant.environment_id)
        )
    return ok({"items": items})


@router.get(
    "/psps/{psp_id}", summary="Read one PSP", responses=answers(400, 401, 404, 503, data=Psp)
)
def get_psp(psp_id: str, tenant: Tenant = Depends(current_tenant)):
    with session_scope() as session:
        data = service.present(session, service.get_psp_or_404(session, tenant, psp_id))
    return ok(data)


@router.patch(
    "/psps/{psp_id}",
    summary="Change status, name, credential or operations",
    responses=answers(
        400,
        401,
        404,
        409,
        413,
        503,
        data=Psp,
        e409="Another PSP of this flow target has that name",
    ),
)
def update_psp(psp_id: str, body: PspUpdate, tenant: Tenant = Depends(current_tenant)):
    with session_scope() as session:
        data = service.update_psp(session, key_ring(), tenant, psp_id, body)
    cache.forget(tenant, psp_id)
    return ok(data)
