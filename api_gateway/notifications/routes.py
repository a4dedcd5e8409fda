"""Merchant notification delivery: what was sent, and re-sending one."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from api_gateway.auth import Tenant, current_tenant
from api_gateway.envelope import ok
from api_gateway.errors import NotFound
from api_gateway.notifications import schemas
from api_gateway.openapi import answers
from storage import notifications as repo
from storage import transactions as txn_repo
from storage.db import session_scope
from storage.transaction_view import notification_view

router = APIRouter(tags=["Notifications"])


@router.get(
    "/transactions/{txn_id}/notifications",
    summary="Merchant notification attempts",
    responses=answers(400, 401, 404, 503, data=schemas.Notifications),
)
def list_notifications(txn_id: str, tenant: Tenant = Depends(current_tenant)):
    with session_scope() as session:
        if txn_repo.get_for_tenant(session, tenant.brand_id, tenant.environment_id, txn_id) is None:
            raise NotFound("Transaction not found")
        items = [notification_view(n, a) for n, a in repo.for_transaction(session, txn_id)]
    return ok({"items": items})


@router.post(
    "/notifications/{notification_id}/retry",
    summary="Send a notification again",
    responses=answers(400, 401, 404, 503, data=schemas.Notification, ok="Scheduled for delivery"),
)
def retry_notification(notification_id: str, tenant: Tenant = Depends(current_tenant)):
    with session_scope() as session:
        notification = repo.find(session, notification_id, environment_id=tenant.environment_id)
        if notification is None:
            raise NotFound("Notification not found")
        repo.rearm(session, notification)
        view = notification_view(notification, [])
    return ok(view, message="Notification scheduled for delivery")
