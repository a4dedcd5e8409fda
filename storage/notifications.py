"""Merchant notifications and their delivery attempts.

One per (transaction, event type): a terminal transition (`transaction.success`, ...), a
hold for review (`transaction.review`) or a success after failure
(`transaction.late_success`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from connxt.ids import random_id
from storage.models import Notification, NotificationAttempt

# The task that delivers one notification; its message leaves with the row's transaction.


def ensure_notification(session: Session, txn_id: str, environment_id: str, event_type: str) -> str:
    """The one notification for (transaction, event); created on first call."""
    created = session.execute(
        insert(Notification)
        .values(
            id=random_id("ntf"),
            txn_id=txn_id,
            environment_id=environment_id,
            event_type=event_type,
            status="PENDING",
            next_attempt_at=datetime.now(UTC),
        )
        .on_conflict_do_nothing(constraint="uq_notifications_txn_event")
        .returning(Notification.id)
    ).scalar_one_or_none()
    if created is not None:
        return created
    return session.scalar(
        select(Notification.id).where(
            Notification.txn_id == txn_id, Notification.event_type == event_type
        )
    )


def lock_notification(session: Session, notification_id: str) -> Notification | None:
    """Row-locked, skipping one another worker is delivering right now."""
    return session.scalar(
        select(Notification)
        .where(Notification.id == notification_id)
        .with_for_update(skip_locked=True)
    )


def record_attempt(
    session: Session,
    notification: Notification,
    url: str,
    status_code: int | None,
    error: str | None,
    elapsed_ms: float,
    retry_after: timedelta | None,
) -> None:
    session.add(
        NotificationAttempt(
            notification_id=notification.id,
            url=url,
            status_code=status_code,
            error=error,
            elapsed_ms=round(elapsed_ms, 1),
        )
    )
    notification.attempts += 1
    now = datetime.now(UTC)
    if status_code is not None and 200 <= status_code < 300:
        notification.status, notification.delivered_at, notification.next_attempt_at = (
            "DELIVERED",
            now,
            None,
        )
    elif retry_after is None:
        notification.status, notification.next_attempt_at = "FAILED", None
    else:
        notification.next_attempt_at = now + retry_after


def due_notifications(session: Session, limit: int = 100) -> list[str]:
    return list(
        session.scalars(
            select(Notification.id)
            .where(Notification.status == "PENDING", Notification.next_attempt_at <= func.now())
            .order_by(Notification.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )


def for_transaction(session: Session, txn_id: str) -> list[tuple[Notification, list]]:
    notifications = list(
        session.scalars(
            select(Notification)
            .where(Notification.txn_id == txn_id)
            .order_by(Notification.created_at)
        )
    )
    out = []
    for notification in notifications:
        attempts = list(
            session.scalars(
                select(NotificationAttempt)
                .where(NotificationAttempt.notification_id == notification.id)
                .order_by(NotificationAttempt.id)
            )
        )
        out.append((notification, attempts))
    return out
