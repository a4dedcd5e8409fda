"""Merchant notifications and their delivery attempts.

One per (transaction, event type) for a terminal transition (`transaction.success`, ...);
one per review for a hold (`transaction.review`) or a success after failure
(`transaction.late_success`), which a transaction can have several of (storage.reviews).
Or one per (reconciliation run, event type), about an environment rather than a
transaction: `reconciliation.completed`, which carries its own payload
(storage.recon.matching).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from connxt import tasks
from connxt.ids import random_id
from storage.models import Notification, NotificationAttempt, NotificationStatus
from storage.outbox import add_message
from storage.transaction_columns import VIEW_COLUMNS

# The task that delivers one notification; its message leaves with the row's transaction.


def add_review_notification(
    session: Session, txn_id: str, environment_id: str, event_type: str, review_id: str
) -> str:
    """The notification of one review (storage.reviews), keyed by the review: each review
    of a transaction is told, however many of one type it has. Created on first call.

    The conflict target is left unnamed: whichever unique index refuses the row (the
    constraint of 0008_captured_and_reviews, or the one a later release replaces it with),
    the review's notification is there already."""
    created = session.execute(
        insert(Notification)
        .values(
            id=random_id("ntf"),
            txn_id=txn_id,
            environment_id=environment_id,
            event_type=event_type,
            review_id=review_id,
            status=NotificationStatus.PENDING,
            next_attempt_at=datetime.now(UTC),
        )
        .on_conflict_do_nothing()
        .returning(Notification.id)
    ).scalar_one_or_none()
    if created is not None:
        return created
    # Refused: a row with this review id is there (the unique key holds review_id; the
    # primary key is random), committed by the writer the insert waited for, if not ours.
    return session.execute(
        select(Notification.id).where(Notification.review_id == review_id)
    ).scalar_one()


# What a delivery needs, read in the statement that leases the notification: the
# notification, its environment's URL and sealed signing secret, and the transaction as
# the merchant sees it (its VIEW_COLUMNS, storage.transaction_view).
# A review's notification tells of its own review, not of the one the transaction shows.
_REVIEW_COLUMNS = {
    "review_reason": "reason",
    "review_detail": "detail",
    "review_opened_at": "opened_at",
    "review_resolved_at": "resolved_at",
    "review_resolution": "resolution",
    "review_note": "note",
    "review_resolved_by": "resolved_by",
}
#
# Every notification of a delivery batch is leased in one statement. The rows are locked in
# id order (two batches naming the same notifications cannot deadlock), and each is taken
# only while it is due, or with the sweep's claim (``lease_token``) its delivery was sent for.
# ``lease_token`` then names this lease, until its attempt is recorded: the record is taken
# only from the lease that made the attempt (``record_deliveries``).
_LEASE = f"""
WITH wanted AS (
  SELECT * FROM unnest(CAST(%(ids)s AS text[]), CAST(%(tokens)s AS text[])) AS w(id, token)
), due AS (
  SELECT n.id FROM notifications n JOIN wanted w ON w.id = n.id
  WHERE n.status = 'PENDING' AND (n.next_attempt_at <= now() OR n.lease_token = w.token)
  ORDER BY n.id
  FOR UPDATE OF n
), leased AS (
  UPDATE notifications n SET next_attempt_at = now() + make_interval(secs => %(lease)s),
    lease_token = %(lease_token)s
  FROM due WHERE n.id = due.id
  RETURNING n.id, n.txn_id, n.environment_id, n.event_type, n.attempts, n.review_id, n.payload
)
SELECT leased.id AS notification_id, leased.event_type, leased.attempts, leased.payload,
       leased.environment_id, e.notification_url, e.notification_secret_key_id,
       e.notification_secret_sealed, leased.review_id,
       {", ".join("t." + c for c in VIEW_COLUMNS)},
       {", ".join(f"r.{c} AS r_{c}" for c in _REVIEW_COLUMNS.values())}
FROM leased
JOIN environments e ON e.id = leased.environment_id
LEFT JOIN transactions t ON t.id = leased.txn_id
LEFT JOIN transaction_reviews r ON r.id = leased.review_id
"""


@dataclass(frozen=True)
class Leased:
    """A notification taken for one delivery attempt (the lease ends with the attempt)."""

    id: str
    event_type: str
    attempts: int  # before this one
    lease: str  # this lease's token: its attempt's record is taken only under it
    environment: SimpleNamespace  # id, notification_url, the sealed secret (storage.tenants)
    txn: SimpleNamespace  # the transaction's columns for storage.transaction_view
    # What a notification about no transaction carries instead (None for the others).
    payload: dict[str, Any] | None = None


def lease_many(
    session: Session, wanted: dict[str, str | None], seconds: float
) -> dict[str, Leased]:
    """Take the notifications that are due for ``seconds``: nobody else delivers them
    meanwhile, and no database connection is held while the merchants answer. Those not
    due (delivered, failed for good, retried later, or being delivered right now) are left
    out of the answer.

    ``wanted``: each notification id with the sweep's claim (``claim_due``) its delivery was
    sent for, if it was. A claim is good for one lease: a duplicate of the sweep's message
    finds it spent and the row not due."""
    if not wanted:
        return {}
    token = secrets.token_hex(8)
    rows = (
        session.connection()
        .exec_driver_sql(
            _LEASE,
            {
                "ids": list(wanted),
                "tokens": list(wanted.values()),
                "lease": float(seconds),
                "lease_token": token,
            },
        )
        .mappings()
        .all()
    )
    return {row["notification_id"]: _leased(row, token) for row in rows}


def _leased(row: Any, token: str) -> Leased:
    environment = SimpleNamespace(
        id=row["environment_id"],
        notification_url=row["notification_url"],
        notification_secret_key_id=row["notification_secret_key_id"],
        notification_secret_sealed=row["notification_secret_sealed"],
    )
    txn = SimpleNamespace(**{c: row[c] for c in VIEW_COLUMNS})
    if row["review_id"] is not None:
        for column, own in _REVIEW_COLUMNS.items():
            setattr(txn, column, row[f"r_{own}"])
    return Leased(
        row["notification_id"],
        row["event_type"],
        row["attempts"],
        token,
        environment,
        txn,
        row["payload"],
    )


def lease(
    session: Session, notification_id: str, seconds: float, token: str | None = None
) -> Leased | None:
    """``lease_many`` for one notification: it, or None when it is not due."""
    return lease_many(session, {notification_id: token}, seconds).get(notification_id)


@dataclass(frozen=True)
class Delivery:
    """One attempt's result, to be recorded."""

    notification_id: str
    lease: str  # the lease the attempt was made under (``Leased.lease``)
    url: str
    status_code: int | None
    error: str | None
    elapsed_ms: float
    retry_after: timedelta | None  # when the next attempt is due, if one is left

    @property
    def status(self) -> NotificationStatus:
        """DELIVERED on a 2xx, PENDING again while a retry is left, else FAILED."""
        if self.status_code is not None and 200 <= self.status_code < 300:
            return NotificationStatus.DELIVERED
        if self.retry_after is None:
            return NotificationStatus.FAILED
        return NotificationStatus.PENDING


# Attempts and what follows from them, in one statement. Every attempt made is kept; the
# notification moves only while the lease its attempt was made under still holds it (still
# PENDING, and nobody has leased or claimed it since: a lease that ran out is the sweep's).
_RECORD = """
WITH r AS (
  SELECT * FROM jsonb_to_recordset(CAST(%(rows)s AS jsonb)) AS r(
    id text, lease text, url text, status_code int, error text, elapsed_ms numeric,
    status text, retry_in float8)
), attempt AS (
  INSERT INTO notification_attempts (notification_id, url, status_code, error, elapsed_ms)
  SELECT id, url, status_code, error, elapsed_ms FROM r
)
UPDATE notifications n SET attempts = n.attempts + 1, status = r.status, lease_token = NULL,
  delivered_at = CASE WHEN r.status = 'DELIVERED' THEN now() END,
  next_attempt_at = CASE WHEN r.status = 'PENDING'
    THEN now() + make_interval(secs => r.retry_in) END
FROM r WHERE n.id = r.id AND n.status = 'PENDING' AND n.lease_token = r.lease
RETURNING n.id
"""

# What ``record_deliveries`` says of an attempt whose lease no longer held the notification
# (it ran out and the sweep took the row, or an operator re-armed it): kept as an attempt,
# nothing else changed.
LEASE_LOST = "LEASE_LOST"


def record_deliveries(session: Session, deliveries: list[Delivery]) -> dict[str, str]:
    """Record the attempts: DELIVERED on a 2xx, PENDING again after ``retry_after``, or
    FAILED when no retry is left; ``LEASE_LOST`` where the attempt's lease no longer held
    the notification. Each notification's new status."""
    if not deliveries:
        return {}
    rows = [
        {
            "id": d.notification_id,
            "lease": d.lease,
            "url": d.url,
            "status_code": d.status_code,
            "error": d.error,
            "elapsed_ms": round(d.elapsed_ms, 1),
            "status": d.status,
            "retry_in": d.retry_after.total_seconds() if d.retry_after else 0.0,
        }
        for d in deliveries
    ]
    moved = {
        row[0]
        for row in session.connection().exec_driver_sql(
            _RECORD, {"rows": orjson.dumps(rows).decode()}
        )
    }
    return {
        d.notification_id: d.status if d.notification_id in moved else LEASE_LOST
        for d in deliveries
    }


def skip(session: Session, notification_ids: list[str]) -> None:
    """Nowhere to send them: recorded as such (the transaction stays readable by API)."""
    session.connection().exec_driver_sql(
        "UPDATE notifications SET status = 'SKIPPED', next_attempt_at = NULL "
        "WHERE id = ANY(%(ids)s)",
        {"ids": notification_ids},
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


def for_transaction(
    session: Session, txn_id: str
) -> list[tuple[Notification, list[NotificationAttempt]]]:
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


def find(
    session: Session,
    notification_id: str,
    *,
    environment_id: str | None = None,
    txn_id: str | None = None,
) -> Notification | None:
    """One notification, when it is of the environment (a tenant's request) or of the
    transaction (an operator's page) named; None otherwise, as when there is none."""
    query = select(Notification).where(Notification.id == notification_id)
    if environment_id is not None:
        query = query.where(Notification.environment_id == environment_id)
    if txn_id is not None:
        query = query.where(Notification.txn_id == txn_id)
    return session.scalar(query)


def rearm(session: Session, notification: Notification) -> None:
    """Send ``notification`` again now, whatever became of it: due in the database (the
    notify sweep delivers it within seconds) and a delivery through the outbox at commit,
    which makes that sooner."""
    notification.status = NotificationStatus.PENDING
    notification.next_attempt_at = datetime.now(UTC)
    notification.lease_token = None  # a sweep's claim on it is spent
    add_message(session, tasks.DELIVER, {"notification_id": notification.id})


def given_up(session: Session, environment_id: str | None, limit: int = 100) -> list[Notification]:
    """Notifications no retry is left for (FAILED), newest first; of one environment, or
    of every one when ``environment_id`` is None (operators)."""
    query = select(Notification).where(Notification.status == NotificationStatus.FAILED)
    if environment_id is not None:
        query = query.where(Notification.environment_id == environment_id)
    return list(session.scalars(query.order_by(Notification.created_at.desc()).limit(limit)))
