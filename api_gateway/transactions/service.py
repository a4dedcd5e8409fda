"""Step 3: validate everything, then write the transaction, its events and its outbox row.

Nothing is written unless every check passes; the whole write is one database transaction,
and the `transactions.initiate` task leaves only after it commits (storage.outbox).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from api_gateway import idempotency
from api_gateway.auth import Tenant
from api_gateway.errors import BadRequest, NotFound, Unprocessable, field_error
from api_gateway.jsonschemas import schema_errors
from api_gateway.transactions.schemas import TransactionCreate
from connectors.money import fits_minor_units, is_iso4217, minor_units
from connxt.ids import random_id
from connxt.settings import get_settings
from state_machine import Event, Source, Status, apply
from storage.catalog import TargetRow, cached_target
from storage.models import PspOperation, Transaction
from storage.outbox import add_message
from storage.psps import get_psp
from storage.transactions import record_steps, refunded_total

INITIATE_TASK = "transactions.initiate"
DEFAULT_TYPE = {"DEPOSIT": "deposit", "WITHDRAW": "withdrawal", "REFUND": "refund"}


def _dig(payload: dict[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(payload, dict):
            return None
        payload = payload.get(key)
    return payload


def _check_request(session: Session, tenant: Tenant, body: TransactionCreate):
    psp = get_psp(session, tenant.brand_id, tenant.environment_id, body.pspId)
    if psp is None:
        raise NotFound("PSP not found")
    errors: list[dict[str, str]] = []
    if psp.status != "ENABLED":
        errors.append(field_error("pspId", "PSP is disabled"))
    if body.flowTargetId != psp.flow_target_id:
        errors.append(field_error("flowTargetId", "not the flow target of this PSP"))
    target: TargetRow = cached_target(session, psp.flow_target_id)
    action = target.action(body.flowActionId)
    operation = session.get(PspOperation, (psp.id, body.flowActionId))
    if action is None or operation is None:
        errors.append(field_error("flowActionId", "not an operation of this PSP"))
    elif operation.status != "ENABLED":
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
        errors += schema_errors(body.executePayload, action.input_schema or {}, "executePayload")
    if action is not None and action.name == "REFUND" and body.parentTxnId is None:
        errors.append(field_error("parentTxnId", "required for a refund"))
    if action is not None and action.name != "REFUND" and body.parentTxnId is not None:
        errors.append(field_error("parentTxnId", "only a refund has a parent transaction"))
    if errors:
        raise BadRequest("Validation failed", errors)
    return psp, action


def _check_refund(session: Session, tenant: Tenant, body: TransactionCreate, psp_id: str) -> None:
    # The parent row lock serializes concurrent refunds of one deposit: the remainder
    # computed below cannot be spent twice.
    parent = session.scalar(
        select(Transaction)
        .where(
            Transaction.id == body.parentTxnId,
            Transaction.brand_id == tenant.brand_id,
            Transaction.environment_id == tenant.environment_id,
        )
        .with_for_update()
    )
    if parent is None:
        raise BadRequest("Validation failed", [field_error("parentTxnId", "unknown transaction")])
    problems = []
    if parent.action != "DEPOSIT" or parent.status != Status.SUCCESS.value:
        problems.append(field_error("parentTxnId", "must be a successful deposit"))
    if parent.psp_id != psp_id:
        problems.append(field_error("parentTxnId", "was made through another PSP"))
    if parent.currency != body.txnCurrency:
        problems.append(field_error("txnCurrency", "must be the deposit's currency"))
    if problems:
        raise BadRequest("Validation failed", problems)
    remaining = parent.amount - refunded_total(session, parent.id)
    if body.txnAmount > remaining:
        raise Unprocessable(
            "Refund exceeds the refundable remainder",
            [field_error("txnAmount", f"at most {remaining:f} can still be refunded")],
        )


def create_transaction(session: Session, tenant: Tenant, body: TransactionCreate) -> Transaction:
    psp, action = _check_request(session, tenant, body)
    if action.name == "REFUND":
        _check_refund(session, tenant, body, psp.id)
    txn = Transaction(
        id=random_id("txn"),
        brand_id=tenant.brand_id,
        environment_id=tenant.environment_id,
        psp_id=psp.id,
        flow_action_id=action.id,
        flow_target_id=psp.flow_target_id,
        action=action.name,
        transaction_type=body.transactionType or DEFAULT_TYPE[action.name],
        amount=body.txnAmount,
        currency=body.txnCurrency,
        status=Status.NEW.value,
        version=0,
        parent_txn_id=body.parentTxnId,
        order_id=_str_or_none(_dig(body.executePayload, "body", "order", "id")),
        user_id=_str_or_none(_dig(body.executePayload, "body", "customer", "id")),
        execute_payload=body.executePayload,
        # If the initiate message is lost, reconciliation starts the transaction from here.
        next_inquiry_at=datetime.now(UTC) + timedelta(seconds=get_settings().inquiry_schedule[0]),
    )
    created = apply(Status.NEW, Event.CREATE)
    txn.status = created.status.value
    session.add(txn)
    session.flush()
    record_steps(session, txn.id, created, Source.API, "validated and stored")
    add_message(session, INITIATE_TASK, {"txn_id": txn.id})
    idempotency.link_resource(session, txn.id)
    session.flush()
    return txn


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)[:200]
