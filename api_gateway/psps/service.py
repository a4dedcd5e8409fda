"""Step 2 and PSP management: validate against the catalog, seal credentials, persist."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from api_gateway import idempotency
from api_gateway.auth import Tenant
from api_gateway.errors import BadRequest, Conflict, NotFound, field_error
from api_gateway.jsonschemas import schema_errors
from api_gateway.psps.schemas import OperationIn, PspCreate, PspUpdate
from connectors.registry import get_connector
from connxt.secrets import KeyRing
from connxt.settings import get_settings
from storage import audit
from storage import psps as repo
from storage.catalog import ENABLED, TargetRow, load_target
from storage.transaction_view import api_time

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from storage.models import Psp, PspOperation

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


_NAME_TAKEN = "A PSP with this name already exists for this flow target"


def create_psp(session: Session, ring: KeyRing, tenant: Tenant, body: PspCreate) -> dict[str, Any]:
    target = _target_or_400(session, body.flowTargetId)
    if target.status != ENABLED:
        raise BadRequest(
            "Validation failed", [field_error("flowTargetId", "flow target is disabled")]
        )
    credential = _parse_credential(body.credential, target)
    operations = _check_operations(body.operations, target)
    try:
        psp = repo.add_psp(
            session,
            ring,
            brand_id=tenant.brand_id,
            environment_id=tenant.environment_id,
            flow_target_id=target.id,
            name=body.name,
            description=body.description,
            logo=body.logo,
            credential=credential,
            operations=operations,
        )
    except repo.NameTaken:
        raise Conflict(_NAME_TAKEN) from None
    idempotency.link_resource(session, psp.id)
    audit.record(session, tenant.actor, "psp.created", psp.id, None, _audited(psp, operations))
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
    stored = repo.operations_of(session, [psp.id])[psp.id]
    before = _audited(psp, _operation_fields(stored))
    sealed_before = psp.credential_key_id
    credential = None
    if "credential" in changes:
        credential = _parse_credential(body.credential or "", target)
    operations = None
    if body.operations is not None:
        operations = _check_operations(body.operations, target)
    # A null name or status keeps the one there; a null description or logo clears it.
    fields = {
        field: changes[field]
        for field in repo.CHANGEABLE
        if field in changes and (field in ("description", "logo") or changes[field] is not None)
    }
    try:
        repo.change_psp(
            session,
            ring,
            psp,
            changes=fields,
            credential=credential,
            operations=operations,
            updated_by=tenant.environment_id,
        )
    except repo.NameTaken:
        raise Conflict(_NAME_TAKEN) from None
    if credential is not None:
        audit.record(
            session,
            tenant.actor,
            "psp.credential_rotated",
            psp.id,
            {"sealedUnder": sealed_before},
            {"sealedUnder": psp.credential_key_id},
        )
    if operations is not None:  # replaced: read back what was stored (one query, not three)
        stored = repo.operations_of(session, [psp.id])[psp.id]
    after = _audited(psp, _operation_fields(stored))
    if after != before:
        audit.record(session, tenant.actor, "psp.updated", psp.id, before, after)
    return present(session, psp, target, stored)


def _operation_fields(stored: list[PspOperation]) -> list[dict[str, str]]:
    return [{"flowActionId": op.flow_action_id, "status": op.status} for op in stored]


def _audited(psp: Psp, operations: list[dict[str, str]]) -> dict[str, Any]:
    """What the audit trail keeps of a PSP account: never its credential, nor its logo."""
    return {
        "name": psp.name,
        "description": psp.description,
        "status": psp.status,
        "operations": [
            {"flowActionId": op["flowActionId"], "status": op["status"]} for op in operations
        ],
    }


def present_all(session: Session, psps: list[Psp]) -> list[dict[str, Any]]:
    """Many PSPs in three queries, whatever their number: operations and targets batched."""
    operations = repo.operations_of(session, [p.id for p in psps])
    targets: dict[str, TargetRow] = {}
    for psp in psps:
        if psp.flow_target_id not in targets:
            target = load_target(session, psp.flow_target_id)
            assert target is not None  # the account's target: see present()
            targets[psp.flow_target_id] = target
    return [present(session, p, targets[p.flow_target_id], operations[p.id]) for p in psps]


def present(
    session: Session,
    psp: Psp,
    target: TargetRow | None = None,
    operations: list[PspOperation] | None = None,
) -> dict[str, Any]:
    """The reference's Step 2 answer; the credential is never returned."""
    target = target or load_target(session, psp.flow_target_id)
    # The account's flow target: its flow_target_id is a foreign key, and flow targets are
    # never deleted (only disabled).
    assert target is not None
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
