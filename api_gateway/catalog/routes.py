"""Step 1: the flow type definitions (the PSP catalog)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from api_gateway.auth import Tenant, current_tenant
from api_gateway.catalog.schemas import FlowTypeDefinitions
from api_gateway.envelope import ok
from api_gateway.errors import NotFound
from api_gateway.openapi import answers
from storage.catalog import TargetRow, load_flow_type
from storage.db import session_scope

router = APIRouter(tags=["Catalog"])


def _target(t: TargetRow) -> dict:
    # The one shape of a catalog target (catalog.schemas.FlowTarget documents it).
    return {
        "id": t.id,
        "name": t.name,
        "logo": t.logo,
        "status": t.status,
        "credentialSchema": t.credential_schema,
        "inputSchema": t.input_schema,
        "actions": [
            {
                "id": a.id,
                "name": a.name,
                # Not in the reference's example; shown as the target's status is.
                "status": a.status,
                "definition": None
                if a.definition_id is None
                else {
                    "id": a.definition_id,
                    "description": a.definition_description,
                    "inputSchema": a.input_schema,
                },
            }
            for a in t.actions
        ],
    }


@router.get(
    "/flow-types/definitions",
    summary="Step 1: flow type definitions",
    responses=answers(
        400, 401, 404, 503, data=FlowTypeDefinitions, e404="No flow type of that name"
    ),
)
def flow_type_definitions(
    type: str = Query(min_length=1, max_length=50, description="Flow type name, e.g. PSP"),
    _tenant: Tenant = Depends(current_tenant),
):
    with session_scope() as session:
        found = load_flow_type(session, type)
    if found is None:
        raise NotFound(f"Flow type {type!r} not found")
    flow_type, targets = found
    return ok({"name": flow_type.name, "targets": [_target(t) for t in targets]})
