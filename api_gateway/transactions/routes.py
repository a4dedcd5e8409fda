"""HTTP for transactions: Step 3, reads, history."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Query, Request

from api_gateway import cursors, idempotency
from api_gateway.auth import Tenant, client_address, current_tenant, tenant_for
from api_gateway.envelope import ok
from api_gateway.errors import NotFound
from api_gateway.hot_paths import hot_route, read_body
from api_gateway.openapi import answers
from api_gateway.runtime import runtime
from api_gateway.transactions import accept
from api_gateway.transactions.docs import STEP3_ANSWERS, STEP3_OPENAPI
from api_gateway.transactions.schemas import (
    Transaction,
    TransactionEvents,
    TransactionPage,
    Webhooks,
)
from connectors.money import minor_units
from storage import inbox
from storage import transactions as repo
from storage.db import session_scope
from storage.transaction_view import event_view, transaction_view, webhook_view

router = APIRouter(tags=["Transactions"])


@router.post(
    "/transactions",
    summary="Step 3: create and initiate a transaction",
    openapi_extra=STEP3_OPENAPI,
    responses=STEP3_ANSWERS,
)
@hot_route  # taken before the router (api_gateway.hot_paths)
async def create_transaction(request: Request):
    # Headers are read here rather than declared as dependencies: this is the hottest
    # route, and dependency resolution would cost more than the rest of the request.
    headers = request.headers
    tenant = await tenant_for(headers.get("x-secret-token"), client_address(request.scope))
    raw = await read_body(request)
    respond_async = "respond-async" in headers.get("prefer", "").lower()
    ingress = runtime(request)
    return await idempotency.run_idempotent(
        headers.get("idempotency-key"),
        tenant.environment_id,
        "POST",
        request.scope["path"],
        raw,
        lambda: accept.create(ingress, tenant, raw, respond_async),
        lambda txn_id: accept.answer(ingress, txn_id, respond_async),
        look_first=False,
    )


def _txn_or_404(session, tenant: Tenant, txn_id: str):
    txn = repo.get_for_tenant(session, tenant.brand_id, tenant.environment_id, txn_id)
    if txn is None:
        raise NotFound("Transaction not found")
    return txn


@router.get(
    "/transactions/{txn_id}",
    summary="Read one transaction",
    responses=answers(400, 401, 404, 503, data=Transaction),
)
def get_transaction(txn_id: str, tenant: Tenant = Depends(current_tenant)):
    with session_scope() as session:
        txn = _txn_or_404(session, tenant, txn_id)
        return ok(transaction_view(txn, minor_units(txn.currency)))


@router.get(
    "/transactions/{txn_id}/events",
    summary="The transaction's status history",
    responses=answers(400, 401, 404, 503, data=TransactionEvents),
)
def get_events(txn_id: str, tenant: Tenant = Depends(current_tenant)):
    with session_scope() as session:
        _txn_or_404(session, tenant, txn_id)
        return ok({"items": [event_view(e) for e in repo.events_of(session, txn_id)]})


@router.get(
    "/transactions",
    summary="List transactions, newest first",
    responses=answers(400, 401, 503, data=TransactionPage),
)
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
    after = cursors.decode(cursor, datetime.fromisoformat, str) if cursor else None
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
            "nextCursor": cursors.encode(page.next_cursor[0].isoformat(), page.next_cursor[1])
            if page.next_cursor
            else None,
        }
    )


@router.get(
    "/transactions/{txn_id}/webhooks",
    summary="PSP notifications stored for the transaction, parked ones included",
    responses=answers(400, 401, 404, 503, data=Webhooks),
)
def get_webhooks(txn_id: str, tenant: Tenant = Depends(current_tenant)):
    with session_scope() as session:
        _txn_or_404(session, tenant, txn_id)
        items = [webhook_view(m) for m in inbox.for_transaction(session, txn_id)]
    return ok({"items": items})
