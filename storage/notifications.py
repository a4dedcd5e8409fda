"""Merchant notifications and their delivery attempts.

One per (transaction, event type): a terminal transition (`transaction.success`, ...), a
hold for review (`transaction.review`) or a success after failure
(`transaction.late_success`).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from connxt import tasks
from connxt.ids import random_id
from storage.models import Notification, NotificationAttempt
from storage.outbox import add_message

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


# What a delivery needs, read in the statement that leases the notification: the
# notification, its environment's URL and sealed signing secret, and the transaction as
# the merchant sees it (storage.transaction_view).
_VIEW_COLUMNS = (
    "id, status, psp_id, psp_txn_id, flow_action_id, flow_target_id, transaction_type, amount, "
    "currency, parent_txn_id, order_id, user_id, navigation, error, created_at, updated_at, "
    "review_reason, review_detail, review_opened_at, review_resolved_at, review_resolution, "
    "review_note"
)
_LEASE = f"""
WITH leased AS (
  UPDATE notifications SET next_attempt_at = now() + make_interval(secs => %(lease)s),
    lease_token = NULL
  WHERE id = %(id)s AND status = 'PENDING'
    AND (next_attempt_at <= now() OR lease_token = %(token)s)
  RETURNING id, txn_id, environment_id, event_type, attempts
)
SELECT leased.id AS notification_id, leased.event_type, leased.attempts,
       leased.environment_id, e.webhook_url, e.webhook_secret_key_id, e.webhook_secret_sealed,
       {", ".join("t." + c.strip() for c in _VIEW_COLUMNS.split(","))}
FROM leased
JOIN environments e ON e.id = leased.environment_id
JOIN transactions t ON t.id = leased.txn_id
"""


@dataclass(frozen=True)
class Leased:
    """A notification taken for one delivery attempt (the lease ends with the attempt)."""

    id: str
    event_type: str
    attempts: int  # before this one
    environment: SimpleNamespace  # id, webhook_url, the sealed secret (storage.tenants)
    txn: SimpleNamespace  # the transaction's columns for storage.transaction_view


def lease(
    session: Session, notification_id: str, seconds: float, token: str | None = None
) -> Leased | None:
    """Take a notification that is due for ``seconds``: nobody else delivers it meanwhile,
    and no database connection is held while the merchant answers. None when it is not due
    (delivered, failed for good, retried later, or being delivered right now).

    ``token``: the sweep's claim (``claim_due``) this delivery was sent for. It is good for
    one lease: a duplicate of the sweep's message finds it spent and the row not due."""
    row = (
        session.connection()
        .exec_driver_sql(_LEASE, {"id": notification_id, "lease": float(seconds), "token": token})
        .mappings()
        .first()
    )
    if row is None:
        return None
    environment = SimpleNamespace(
        id=row["environment_id"],
        webhook_url=row["webhook_url"],
        webhook_secret_key_id=row["webhook_secret_key_id"],
        webhook_secret_sealed=row["webhook_secret_sealed"],
    )
    txn = SimpleNamespace(**{c.strip(): row[c.strip()] for c in _VIEW_COLUMNS.split(",")})
    return Leased(row["notification_id"], row["event_type"], row["attempts"], environment, txn)


_RECORD = """
WITH attempt AS (
  INSERT INTO notification_attempts (notification_id, url, status_code, error, elapsed_ms)
  VALUES (%(id)s, %(url)s, %(status_code)s, %(error)s, %(elapsed_ms)s)
)
UPDATE notifications SET attempts = attempts + 1, status = %(status)s,
  delivered_at = CASE WHEN %(delivered)s THEN now() END,
  next_attempt_at = CASE WHEN %(retry)s THEN now() + make_interval(secs => %(retry_in)s) END
WHERE id = %(id)s
"""


def record_delivery(
    session: Session,
    notification_id: str,
    url: str,
    status_code: int | None,
    error: str | None,
    elapsed_ms: float,
    retry_after: timedelta | None,
) -> str:
    """The attempt and what follows from it, in one statement: DELIVERED on a 2xx, PENDING
    again after ``retry_after``, or FAILED when no retry is left. The new status."""
    if status_code is not None and 200 <= status_code < 300:
        status = "DELIVERED"
    else:
        status = "FAILED" if retry_after is None else "PENDING"
    session.connection().exec_driver_sql(
        _RECORD,
        {
            "id": notification_id,
            "url": url,
            "status_code": status_code,
            "error": error,
            "elapsed_ms": round(elapsed_ms, 1),
            "status": status,
            "delivered": status == "DELIVERED",
            "retry": status == "PENDING",
            "retry_in": retry_after.total_seconds() if retry_after else 0.0,
        },
    )
    return status


def skip(session: Session, notification_id: str) -> None:
    """Nowhere to send it: recorded as such (the transaction stays readable by API)."""
    session.connection().exec_driver_sql(
        "UPDATE notifications SET status = 'SKIPPED', next_attempt_at = NULL WHERE id = %(id)s",
        {"id": notification_id},
    )


_CLAIM_DUE = """
WITH due AS (
  SELECT id FROM notifications
  WHERE status = 'PENDING' AND next_attempt_at <= now()
  ORDER BY next_attempt_at LIMIT %(limit)s
  FOR UPDATE SKIP LOCKED
)
UPDATE notifications n
SET next_attempt_at = now() + make_interval(secs => %(lease)s), lease_token = %(token)s
FROM due WHERE n.id = due.id
RETURNING n.id
"""


def claim_due(session: Session, seconds: float, limit: int = 100) -> tuple[str, list[str]]:
    """The sweep's claim: notifications that are due, leased for ``seconds`` under a new
    token, so the next sweep does not send them again while their delivery is on its way.
    Returns the token (for ``lease``) and the ids. A delivery that never comes (its message
    lost) leaves the row due again once the lease is over."""
    token = secrets.token_hex(8)
    rows = session.connection().exec_driver_sql(
        _CLAIM_DUE, {"limit": limit, "lease": float(seconds), "token": token}
    )
    return token, [row[0] for row in rows]


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


def rearm(session: Session, notification: Notification) -> None:
    """Send ``notification`` again now, whatever became of it: due in the database (the
    notify sweep delivers it within seconds) and a delivery through the outbox at commit,
    which makes that sooner."""
    notification.status = "PENDING"
    notification.next_attempt_at = datetime.now(UTC)
    notification.lease_token = None  # a sweep's claim on it is spent
    add_message(session, tasks.DELIVER, {"notification_id": notification.id})


def given_up(session: Session, environment_id: str | None, limit: int = 100) -> list[Notification]:
    """Notifications no retry is left for (FAILED), newest first; of one environment, or
    of every one when ``environment_id`` is None (operators)."""
    query = select(Notification).where(Notification.status == "FAILED")
    if environment_id is not None:
        query = query.where(Notification.environment_id == environment_id)
    return list(session.scalars(query.order_by(Notification.created_at.desc()).limit(limit)))
