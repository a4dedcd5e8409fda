"""Step 3: validate everything, then describe what to store.

Nothing is written unless every check passes. A deposit or a withdrawal is stored by the
ingress's group commit (storage.transaction_writer); a refund needs its parent row locked
while the refundable remainder is computed, so it is written here, in a database
transaction of its own. Either way the transaction, its events and its outbox row commit
together, and the `transactions.initiate` task leaves only after that commit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from api_gateway import idempotency
from api_gateway.auth import Tenant
from api_gateway.errors import BadRequest, Unprocessable, field_error
from api_gateway.jsonschemas import payload_errors
from api_gateway.transactions.body import payload_json
from api_gateway.transactions.schemas import TransactionCreate
from connectors.money import fits_minor_units, is_iso4217, minor_units
from connxt import tasks
from connxt.ids import random_id
from connxt.settings import get_settings
from state_machine import Status
from storage.captures import refundable
from storage.catalog import ENABLED, ActionRow, TargetRow, cached_target
from storage.psps import PspSnapshot, load_snapshot
from storage.refunds import lock_parent
from storage.transaction_writer import IdempotencyRow, NewTransaction, Stored, insert_one

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

DEFAULT_TYPE = {"DEPOSIT": "deposit", "WITHDRAW": "withdrawal", "REFUND": "refund"}


def _dig(payload: dict[str, Any], *path: str) -> Any:
    found: Any = payload
    for key in path:
        if not isinstance(found, dict):
            return None
        found = found.get(key)
    return found


def check_request(
    body: TransactionCreate, psp: PspSnapshot | None, target: TargetRow | None
) -> ActionRow:
    """Every check of Step 3 that needs no lock; the action to run, or an ApiError."""
    if psp is None or target is None:
        # The reference lists a bad pspId among Step 3's validation errors. Another
        # tenant's PSP reads the same as an unknown one: nothing confirms it exists.
        raise BadRequest("Validation failed", [field_error("pspId", "unknown PSP")])
    errors: list[dict[str, str]] = []
    if psp.status != ENABLED:
        errors.append(field_error("pspId", "PSP is disabled"))
    if body.flowTargetId != psp.flow_target_id:
        errors.append(field_error("flowTargetId", "not the flow target of this PSP"))
    elif target.status != ENABLED:
        errors.append(field_error("flowTargetId", "flow target is disabled"))
    action = target.action(body.flowActionId)
    operation_status = psp.operation_status.get(body.flowActionId)
    if action is None or operation_status is None:
        errors.append(field_error("flowActionId", "not an operation of this PSP"))
    elif action.status != ENABLED:
        errors.append(field_error("flowActionId", "flow action is disabled"))
    elif operation_status != ENABLED:
        errors.append(field_error("flowActionId", "operation is disabled on this PSP"))
    currency = body.txnCurrency
    if not is_iso4217(currency):
        errors.append(field_error("txnCurrency", "not an ISO 4217 currency code"))
    elif currency not in target.currencies:
        errors.append(field_error("txnCurrency", f"not supported by {target.name}"))
    elif not fits_minor_units(body.txnAmount, currency):
        errors.append(
            field_error("txnAmount", f"{currency} allows at most {minor_units(currency)} places")
        )
    if action is not None:
        errors += payload_errors(body.executePayload, action.input_schema or {}, "executePayload")
    if action is not None and action.name == "REFUND" and body.parentTxnId is None:
        errors.append(field_error("parentTxnId", "required for a refund"))
    if action is not None and action.name != "REFUND" and body.parentTxnId is not None:
        errors.append(field_error("parentTxnId", "only a refund has a parent transaction"))
    if errors:
        raise BadRequest("Validation failed", errors)
    assert action is not None  # an unknown action is one of the errors above
    return action


def new_transaction(
    tenant: Tenant,
    body: TransactionCreate,
    psp: PspSnapshot,
    target_name: str,
    action: ActionRow,
    idempotency_row: IdempotencyRow | None = None,
    txn_id: str | None = None,
) -> NewTransaction:
    return NewTransaction(
        id=txn_id or random_id("txn"),
        brand_id=tenant.brand_id,
        environment_id=tenant.environment_id,
        psp_id=psp.id,
        flow_action_id=action.id,
        flow_target_id=psp.flow_target_id,
        action=action.name,
        transaction_type=body.transactionType or DEFAULT_TYPE[action.name],
        amount=body.txnAmount,
        currency=body.txnCurrency,
        order_id=_str_or_none(_dig(body.executePayload, "body", "order", "id")),
        user_id=_str_or_none(_dig(body.executePayload, "body", "customer", "id")),
        execute_payload=payload_json(body.executePayload),
        queue=tasks.psp_queue(target_name),
        parent_txn_id=body.parentTxnId,
        idempotency=idempotency_row,
    )


def _check_refund(session: Session, tenant: Tenant, body: TransactionCreate, psp_id: str) -> None:
    # The parent row lock serializes concurrent refunds of one deposit: the remainder
    # computed below cannot be spent twice.
    assert body.parentTxnId is not None  # check_request requires it of a refund
    parent = lock_parent(session, tenant.brand_id, tenant.environment_id, body.parentTxnId)
    if parent is None:
        raise BadRequest("Validation failed", [field_error("parentTxnId", "unknown transaction")])
    problems = []
    if parent.action != "DEPOSIT" or parent.status != Status.SUCCESS.value:
        problems.append(field_error("parentTxnId", "must be a successful deposit"))
    if parent.psp_id != psp_id:
        problems.append(field_error("parentTxnId", "was made through another PSP"))
    # Bounded by what the deposit captured, which is not always what it asked for.
    remaining, currency = refundable(session, parent)
    if currency != body.txnCurrency:
        problems.append(field_error("txnCurrency", f"must be the deposit's currency ({currency})"))
    if problems:
        raise BadRequest("Validation failed", problems)
    if body.txnAmount > remaining:
        raise Unprocessable(
            "Refund exceeds the refundable remainder",
            [field_error("txnAmount", f"at most {remaining:f} can still be refunded")],
        )


def create_refund(session: Session, tenant: Tenant, body: TransactionCreate) -> str:
    """A refund, under its parent's row lock, in the caller's database transaction."""
    psp = load_snapshot(session, tenant.brand_id, tenant.environment_id, body.pspId)
    target = cached_target(session, psp.flow_target_id) if psp is not None else None
    action = check_request(body, psp, target)
    assert psp is not None
    _check_refund(session, tenant, body, psp.id)
    assert target is not None
    txn = new_transaction(tenant, body, psp, target.name, action, idempotency.current_row())
    if insert_one(session, txn, get_settings().inquiry_schedule[0]) is Stored.KEY_TAKEN:
        raise idempotency.KeyTaken(txn.idempotency.key if txn.idempotency else "")
    return txn.id


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)[:200]
