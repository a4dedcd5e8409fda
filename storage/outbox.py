"""The transactional outbox: a task is sent only after the commit that asked for it.

``add_message`` writes the row in the caller's transaction and asks PostgreSQL to wake the
relay when that transaction commits (NOTIFY is transactional: delivered at commit, dropped
on rollback). The relay (workers.relay) then claims unsent rows in batches, publishes them
and deletes what left; beat's re-drive runs the same ``relay_batch`` as a safety net. A
crash between publish and delete sends a message twice, so every task must be safe to
receive twice, and every one is. A message that cannot be published is parked after
``task_max_attempts`` tries instead of blocking the rows behind it forever.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from storage.models import OutboxMessage

log = structlog.get_logger()

CHANNEL = "connxt_outbox"

# Publishes (task, kwargs) pairs in order; returns how many left before the first failure.
Publisher = Callable[[Sequence[tuple[str, dict[str, Any]]]], int]
_NOTIFIED = "connxt_outbox_notified"


def add_message(session: Session, task: str, args: dict[str, Any]) -> OutboxMessage:
    message = OutboxMessage(task=task, args=args)
    session.add(message)
    if not session.info.get(_NOTIFIED):
        session.execute(text(f"SELECT pg_notify('{CHANNEL}', '')"))
        session.info[_NOTIFIED] = True
    return message


def _forget_notify(session: Session, *_args: Any) -> None:
    session.info.pop(_NOTIFIED, None)


def install_session_hooks() -> None:
    """One NOTIFY per database transaction: the flag is cleared when it ends."""
    from sqlalchemy import event

    for name in ("after_commit", "after_rollback", "after_soft_rollback"):
        if not event.contains(Session, name, _forget_notify):
            event.listen(Session, name, _forget_notify)


install_session_hooks()


def claim_unsent(session: Session, older_than: timedelta, limit: int = 500) -> list[OutboxMessage]:
    """Unsent rows past their grace period, locked so concurrent relays skip them."""
    query = select(OutboxMessage).where(OutboxMessage.parked_at.is_(None))
    if older_than > timedelta(0):
        query = query.where(OutboxMessage.created_at < datetime.now(UTC) - older_than)
    query = query.order_by(OutboxMessage.id).limit(limit).with_for_update(skip_locked=True)
    return list(session.scalars(query))


@dataclass(frozen=True)
class Relayed:
    sent: int
    failed: bool  # publishing stopped at a message that could not be sent


def relay_batch(
    session: Session,
    publish: Publisher,
    *,
    older_than: timedelta,
    limit: int,
    max_attempts: int | None,
) -> Relayed:
    """Publish up to ``limit`` unsent messages in order and delete those that left.

    Publishing stops at the first failure; the rows behind it were not tried and stay as
    they are. With ``max_attempts`` the failed row counts an attempt and is parked at the
    limit (beat's paced re-drive counts; the relay, which retries within seconds, does
    not, or a short broker outage would park good messages).
    """
    rows = claim_unsent(session, older_than, limit)
    if not rows:
        return Relayed(0, False)
    sent = publish([(row.task, row.args) for row in rows])
    if sent:
        session.execute(
            delete(OutboxMessage).where(OutboxMessage.id.in_([r.id for r in rows[:sent]]))
        )
    failed = sent < len(rows)
    if failed and max_attempts is not None:
        row = rows[sent]
        row.attempts += 1
        if row.attempts >= max_attempts:
            row.parked_at = datetime.now(UTC)
            log.error("outbox.parked", outbox_id=row.id, task=row.task)
    return Relayed(sent, failed)
