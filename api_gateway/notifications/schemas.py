"""Merchant notifications as answers show them (shaped by storage.transaction_view)."""

from __future__ import annotations

from pydantic import Field

from api_gateway.openapi import ResponseModel, Stamp
from storage.models import NotificationStatus


class Delivery(ResponseModel):
    """One attempt to deliver the notification."""

    url: str
    statusCode: int | None = Field(description="The merchant's HTTP status; null if none came")
    error: str | None
    elapsedMs: float | None
    createdAt: Stamp


class Notification(ResponseModel):
    id: str
    txnId: str | None = Field(description="null for a notification about no one transaction")
    eventType: str = Field(examples=["transaction.success"])
    status: NotificationStatus
    attempts: int
    nextAttemptAt: Stamp | None
    deliveredAt: Stamp | None
    createdAt: Stamp
    deliveries: list[Delivery]


class Notifications(ResponseModel):
    items: list[Notification]
