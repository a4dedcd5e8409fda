"""HTTP for transactions: Step 3, reads, history."""

from __future__ import annotations

import base64
from datetime import datetime

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError

from api_gateway import idempotency
from api_gateway.auth import Tenant, current_tenant
from api_gateway.envelope import ok
from api_gateway.errors import BadRequest, NotFound, field_error
from api_gateway.transactions import service
from api_gateway.transactions.answers import ACCEPTED_MESSAGE, step3_answer
from api_gateway.transactions.body import parse_body
from api_gateway.transactions.schemas import TransactionCreate
from connectors.money import minor_units
from connxt.handoff import wait_for_outcome
from connxt.settings import get_settings
from storage import transactions as repo
from storage.db import session_scope
from storage.transaction_view import api_time, event_view, transaction_view

router = APIRouter(tags=["Transactions"])


def _create(tenant: Tenant, body: TransactionCreate) -> str:
    with session_scope() as session:
        return service.create_transaction(session, tenant, body).id


def _answer(tenant: Tenant, txn_id: str, respond_async: bool) -> JSONResponse:
    with session_scope() as session:
        txn = repo.get_for_tenant(session, tenant.brand_id, tenant.environment_id, txn_id)
        code, message, data = step3_answer(txn, respond_async)
    return ok(data, message=message, status_code=code)


async def _create_and_wait(tenant: Tenant, raw: bytes, respond_async: bool) -> JSONResponse:
    body = parse_body(raw)
    txn_id = await run_in_threadpool(_create, tenant, body)
    if not respond_async:
        await wait_for_outcome(txn_id, get_settings().initiation_wait_seconds)
    try:
        return await run_in_threadpool(_answer, tenant, txn_id, respond_async)
    except DBAPIError:
        # Committed, then the database went away: the transaction exists and will be
        # initiated, so say so (a 503 here would invite a retry that pays twice).
        return ok(
            {"txnId": txn_id, "status": "CREATED"}, ACCEPTED_MESSAGE.format(txnId=txn_id), 202
        )


_STEP3_SCHEMA = {
    "content": {"application/json": {"schema": TransactionCreate.model_json_schema()}},
    "required": True,
}


@router.post(
    "/transactions",
    summary="Step 3: create and initiate a transaction",
    openapi_extra={"requestBody": _STEP3_SCHEMA},
)
async def create_transaction(
    request: Request,
    tenant: Tenant = Depends(current_tenant),
    prefer: str | None = Header(default=None),
    idempotency_key: str | None = Header(default=None, alias="Idempotency-Key"),
):
    raw = await request.body()
    respond_async = "respond-async" in (prefer or "").lower()
    return await idempotency.run_idempotent(
        idempotency_key,
        tenant.environment_id,
        "POST",
        request.url.path,
        raw,
        lambda: _create_and_wait(tenant, raw, respond_async),
        lambda txn_id: run_in_threadpool(_answer, tenant, txn_id, respond_async),
    )


def _txn_or_404(session, tenant: Tenant, txn_id: str):
    txn = repo.get_for_tenant(session, tenant.brand_id, tenant.environment_id, txn_id)
    if txn is None:
        raise NotFound("Transaction not found")
    return txn


@router.get("/transactions/{txn_id}", summary="Read one transaction")
def get_transaction(txn_id: str, tenant: Tenant = Depends(current_tenant)):
    with session_scope() as session:
        txn = _txn_or_404(session, tenant, txn_id)
        return ok(transaction_view(txn, minor_units(txn.currency)))


@router.get("/transactions/{txn_id}/events", summary="The transaction's status history")
def get_events(txn_id: str, tenant: Tenant = Depends(current_tenant)):
    with session_scope() as session:
        _txn_or_404(session, tenant, txn_id)
        return ok({"items": [event_view(e) for e in repo.events_of(session, txn_id)]})


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        stamp, txn_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        return datetime.fromisoformat(stamp), txn_id
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("Validation failed", [field_error("cursor", "invalid cursor")]) from None


def _encode_cursor(position: tuple[datetime, str]) -> str:
    return base64.urlsafe_b64encode(f"{position[0].isoformat()}|{position[1]}".encode()).decode()


@router.get("/transactions", summary="List transactions, newest first")
def list_transactions(
    tenant: Tenant = Depends(current_tenant),
    status: str | None = Query(default=None, max_length=20),
    pspId: str | None = Query(default=None, max_length=40),
    flowActionId: str | None = Query(default=None, max_length=40),
    createdFrom: datetime | None = Query(default=None),
    createdTo: datetime | None = Query(default=None),
    review: bool | None = Query(
        default=None, description="true: only transactions held for an operator's decision"
    ),
    limit: int = Query(default=50, ge=1, le=200),
    cursor: str | None = Query(default=None, max_length=200),
):
    after = _decode_cursor(cursor) if cursor else None
    with session_scope() as session:
        page = repo.list_for_tenant(
            session,
            tenant.brand_id,
            tenant.environment_id,
            limit=limit,
            after=after,
            status=status,
            psp_id=pspId,
            flow_action_id=flowActionId,
            created_from=createdFrom,
            created_to=createdTo,
            review=review,
        )
        items = [transaction_view(t, minor_units(t.currency)) for t in page.items]
    return ok(
        {
            "items": items,
            "nextCursor": _encode_cursor(page.next_cursor) if page.next_cursor else None,
        }
    )


@router.get(
    "/transactions/{txn_id}/webhooks",
    summary="PSP notifications stored for the transaction, parked ones included",
)
def get_webhooks(txn_id: str, tenant: Tenant = Depends(current_tenant)):
    from storage.inbox import for_transaction

    with session_scope() as session:
        _txn_or_404(session, tenant, txn_id)
        items = [
            {
                "id": m.id,
                "eventKey": m.event_key,
                "verified": m.verified,
                "attempts": m.attempts,
                "result": m.result,
                "receivedAt": api_time(m.received_at),
                "processedAt": api_time(m.processed_at),
                "parkedAt": api_time(m.parked_at),
            }
            for m in for_transaction(session, txn_id)
        ]
    return ok({"items": items})
