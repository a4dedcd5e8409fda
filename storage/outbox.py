"""The transactional outbox: a task is sent only after the commit that asked for it.

``add_message`` writes the row in the caller's transaction. When that transaction commits,
the messages are published and marked sent; on rollback they are dropped. A crash between
commit and publish leaves unsent rows, which the re-drive sweep publishes again — so every
task must be safe to receive twice, and every one is.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import event, select, update
from sqlalchemy.orm import Session

from storage.models import OutboxMessage

log = structlog.get_logger()

Publisher = Callable[[str, dict[str, Any]], None]
_publisher: Publisher | None = None
_PENDING = "connxt_outbox"


def install_publisher(publisher: Publisher) -> None:
    """Set how messages leave the process (the Celery app does this at import)."""
    global _publisher
    _publisher = publisher


def add_message(session: Session, task: str, args: dict[str, Any]) -> OutboxMessage:
    message = OutboxMessage(task=task, args=args)
    session.add(message)
    session.info.setdefault(_PENDING, []).append(message)
    return message


def publish_rows(session: Session, messages: list[OutboxMessage]) -> list[int]:
    """Publish messages, mark the ones that left as sent; returns their ids."""
    if _publisher is None:
        raise RuntimeError("no outbox publisher installed")
    sent = []
    for message in messages:
        try:
            _publisher(message.task, message.args)
        except Exception as exc:  # the broker is down: the sweep will send it later
            log.warning("outbox.publish_failed", task=message.task, error=type(exc).__name__)
            break
        sent.append(message.id)
    if sent:
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(sent))
            .values(sent_at=datetime.now(UTC))
        )
    return sent


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    messages = session.info.pop(_PENDING, None)
    if not messages:
        return
    from storage.db import new_session  # late: storage.db builds the engine from settings

    try:
        with new_session() as marker:
            publish_rows(marker, messages)
            marker.commit()
    except Exception as exc:  # never fail the caller's already-committed work
        log.warning("outbox.mark_failed", error=type(exc).__name__)


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(_PENDING, None)


def claim_unsent(session: Session, older_than: timedelta, limit: int = 200) -> list[OutboxMessage]:
    """Unsent rows past their grace period, locked so concurrent sweeps skip them."""
    cutoff = datetime.now(UTC) - older_than
    return list(
        session.scalars(
            select(OutboxMessage)
            .where(
                OutboxMessage.sent_at.is_(None),
                OutboxMessage.parked_at.is_(None),
                OutboxMessage.created_at < cutoff,
            )
            .order_by(OutboxMessage.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
