"""Step 2 and PSP management: validate against the catalog, seal credentials, persist."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api_gateway import idempotency
from api_gateway.auth import Tenant
from api_gateway.errors import BadRequest, Conflict, NotFound, field_error
from api_gateway.jsonschemas import schema_errors
from api_gateway.psps.schemas import OperationIn, PspCreate, PspUpdate
from connectors.registry import get_connector
from connxt.ids import random_id
from connxt.secrets import KeyRing
from connxt.settings import get_settings
from storage import psps as repo
from storage.catalog import ENABLED, TargetRow, load_target
from storage.models import Psp, PspOperation
from storage.transaction_view import api_time

ENCRYPTED = "***ENCRYPTED***"


def _parse_credential(raw: str, target: TargetRow) -> dict[str, Any]:
    try:
        credential = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser's limit
        raise BadRequest(
            "Validation failed", [field_error("credential", "must be a JSON string")]
        ) from None
    if not isinstance(credential, dict):
        raise BadRequest(
            "Validation failed", [field_error("credential", "must encode a JSON object")]
        )
    errors = schema_errors(credential, target.credential_schema, "credential")
    if errors:
        raise BadRequest("Credential does not match the target's credentialSchema", errors)
    signing_field = _webhook_signing_field(target)
    if signing_field and not credential.get(signing_field) and get_settings().is_production:
        # Unsigned webhooks are only hints to ask the PSP: in production every webhook
        # must be verifiable, or anyone could make us ask the PSP at will.
        message = "is required in production: webhooks are verified with it"
        raise BadRequest(
            "Credential does not match the target's credentialSchema",
            [field_error(f"credential.{signing_field}", message)],
        )
    return credential


def _webhook_signing_field(target: TargetRow) -> str | None:
    try:
        connector = get_connector(target.name)
    except KeyError:
        return None
    return getattr(connector, "webhook_signing_field", None)


def _check_operations(operations: list[OperationIn], target: TargetRow) -> list[dict[str, str]]:
    errors, seen = [], set()
    for i, op in enumerate(operations):
        action = target.action(op.flowActionId)
        if action is None:
            errors.append(
                field_error(f"operations[{i}].flowActionId", "not an action of this flow target")
            )
        elif action.status != ENABLED and op.status == ENABLED:
            errors.append(field_error(f"operations[{i}].flowActionId", "flow action is disabled"))
        elif op.flowDefinitionId != action.definition_id:
            errors.append(
                field_error(
                    f"operations[{i}].flowDefinitionId", "not the definition of this flow action"
                )
            )
        if op.flowActionId in seen:
            errors.append(field_error(f"operations[{i}].flowActionId", "listed more than once"))
        seen.add(op.flowActionId)
    if errors:
        raise BadRequest("Validation failed", errors)
    return [op.model_dump() for op in operations]


def _target_or_400(session: Session, target_id: str) -> TargetRow:
    target = load_target(session, target_id)
    if target is None:
        raise BadRequest("Validation failed", [field_error("flowTargetId", "unknown flow target")])
    return target


def _flush_or_conflict(session: Session) -> None:
    # The unique constraint decides, not a prior SELECT: two racing creates cannot both win.
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:
        if "uq_psps_tenant_target_name" in str(exc.orig):
            raise Conflict("A PSP with this name already exists for this flow target") from None
        raise


def create_psp(session: Session, ring: KeyRing, tenant: Tenant, body: PspCreate) -> dict[str, Any]:
    target = _target_or_400(session, body.flowTargetId)
    if target.status != ENABLED:
        raise BadRequest(
            "Validation failed", [field_error("flowTargetId", "flow target is disabled")]
        )
    credential = _parse_credential(body.credential, target)
    operations = _check_operations(body.operations, target)
    psp = Psp(
        id=random_id("psp"),
        brand_id=tenant.brand_id,
        environment_id=tenant.environment_id,
        flow_target_id=target.id,
        name=body.name,
        description=body.description,
        logo=body.logo,
        status="ENABLED",
        created_by=tenant.environment_id,
        updated_by=tenant.environment_id,
    )
    now = datetime.now(UTC)
    psp.created_at = psp.updated_at = now
    repo.seal_credential(ring, psp, credential)
    session.add(psp)
    _flush_or_conflict(session)
    repo.replace_operations(session, psp.id, operations)
    idempotency.link_resource(session, psp.id)
    session.flush()
    return present(session, psp, target)


def get_psp_or_404(session: Session, tenant: Tenant, psp_id: str) -> Psp:
    psp = repo.get_psp(session, tenant.brand_id, tenant.environment_id, psp_id)
    if psp is None:
        raise NotFound("PSP not found")
    return psp


def update_psp(
    session: Session, ring: KeyRing, tenant: Tenant, psp_id: str, body: PspUpdate
) -> dict[str, Any]:
    psp = get_psp_or_404(session, tenant, psp_id)
    target = _target_or_400(session, psp.flow_target_id)
    changes = body.model_dump(exclude_unset=True)
    if "credential" in changes:
        repo.seal_credential(ring, psp, _parse_credential(body.credential or "", target))
    if body.operations is not None:
        repo.replace_operations(session, psp.id, _check_operations(body.operations, target))
    for field in ("name", "description", "logo", "status"):
        if field in changes and (field in ("description", "logo") or changes[field] is not None):
            setattr(psp, field, changes[field])
    psp.updated_at = datetime.now(UTC)
    psp.updated_by = tenant.environment_id
    _flush_or_conflict(session)
    return present(session, psp, target)


def present_all(session: Session, psps: list[Psp]) -> list[dict[str, Any]]:
    """Many PSPs in three queries, whatever their number: operations and targets batched."""
    operations = repo.operations_of(session, [p.id for p in psps])
    targets: dict[str, TargetRow] = {}
    for psp in psps:
        if psp.flow_target_id not in targets:
            targets[psp.flow_target_id] = load_target(session, psp.flow_target_id)
    return [present(session, p, targets[p.flow_target_id], operations[p.id]) for p in psps]


def present(
    session: Session,
    psp: Psp,
    target: TargetRow | None = None,
    operations: list[PspOperation] | None = None,
) -> dict[str, Any]:
    """The reference's Step 2 answer; the credential is never returned."""
    target = target or load_target(session, psp.flow_target_id)
    if operations is None:
        operations = repo.operations_of(session, [psp.id])[psp.id]
    return {
        "id": psp.id,
        "name": psp.name,
        "description": psp.description,
        "logo": psp.logo,
        "credential": ENCRYPTED,
        "brandId": psp.brand_id,
        "environmentId": psp.environment_id,
        "flowTargetId": psp.flow_target_id,
        "status": psp.status,
        "createdAt": api_time(psp.created_at),
        "updatedAt": api_time(psp.updated_at),
        "createdBy": psp.created_by,
        "updatedBy": psp.updated_by,
        "operations": [
            {
                "flowActionId": op.flow_action_id,
                "flowDefinitionId": op.flow_definition_id,
                "status": op.status,
            }
            for op in operations
        ],
        "flowTarget": {
            "id": target.id,
            "credentialSchema": json.dumps(target.credential_schema, separators=(",", ":")),
            "flowTypeId": target.flow_type_id,
            "currencies": target.currencies,
            "countries": target.countries,
            "paymentMethods": target.payment_methods,
            "supportedActions": [
                {
                    "flowActionId": a.id,
                    "flowDefinitionId": a.definition_id,
                    "flowActionName": a.name,
                }
                for a in target.actions
            ],
        },
    }
