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

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import psycopg
import structlog
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from connxt.metrics import PARKED
from connxt.tracing import current_traceparent
from storage.aio import libpq_url
from storage.models import OutboxMessage

log = structlog.get_logger()

CHANNEL = "connxt_outbox"

# Publishes the rows' tasks (workers.app); returns the ids of the rows whose task left.
Publisher = Callable[[Sequence["Unsent"]], set[int]]
_NOTIFIED = "connxt_outbox_notified"


def add_message(
    session: Session, task: str, args: dict[str, Any], queue: str | None = None
) -> OutboxMessage:
    """``queue``: the lane (connxt.tasks), for a task that must not take its default one.
    With traces on, the row carries the current trace context (connxt.tracing)."""
    traceparent = current_traceparent()
    if traceparent is not None:
        args = {**args, "traceparent": traceparent}
    message = OutboxMessage(task=task, args=args, queue=queue)
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


@dataclass(frozen=True)
class Unsent:
    """An outbox row waiting to be published."""

    id: int
    task: str
    args: dict[str, Any]
    queue: str | None
    attempts: int


_CLAIM = (
    "SELECT id, task, args, queue, attempts FROM outbox"
    " WHERE parked_at IS NULL"
    " AND (%(age)s = 0 OR created_at <= now() - make_interval(secs => %(age)s))"
    " ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED"
)


def claim_unsent(session: Session, older_than: timedelta, limit: int = 500) -> list[Unsent]:
    """Unsent rows past their grace period, locked so concurrent relays skip them."""
    rows = session.connection().exec_driver_sql(
        _CLAIM, {"age": older_than.total_seconds(), "limit": limit}
    )
    return [Unsent(*row) for row in rows]


@dataclass(frozen=True)
class Relayed:
    sent: int
    failed: bool  # some of the rows could not be sent


def relay_batch(
    session: Session,
    publish: Publisher,
    *,
    older_than: timedelta,
    limit: int,
    max_attempts: int | None,
) -> Relayed:
    """Publish up to ``limit`` unsent messages, oldest first, and delete those that left.

    Rows that could not be sent stay as they are. With ``max_attempts`` the oldest of them
    counts an attempt and is parked at the limit (beat's paced re-drive counts; the relay,
    which retries within seconds, does not, or a short broker outage would park good
    messages).
    """
    rows = claim_unsent(session, older_than, limit)
    if not rows:
        return Relayed(0, False)
    sent = publish(rows)
    connection = session.connection()
    if sent:
        connection.exec_driver_sql(
            "DELETE FROM outbox WHERE id = ANY(%(ids)s)", {"ids": list(sent)}
        )
    unsent = [row for row in rows if row.id not in sent]
    if unsent and max_attempts is not None:
        row = unsent[0]
        parked = row.attempts + 1 >= max_attempts
        connection.exec_driver_sql(
            "UPDATE outbox SET attempts = attempts + 1,"
            " parked_at = CASE WHEN %(parked)s THEN now() END WHERE id = %(id)s",
            {"id": row.id, "parked": parked},
        )
        if parked:
            log.error("outbox.parked", outbox_id=row.id, task=row.task)
            PARKED.labels("outbox").inc()
    return Relayed(len(sent), bool(unsent))


def for_transaction(session: Session, txn_id: str) -> list[OutboxMessage]:
    """The transaction's messages not sent yet (a row goes once its task left), oldest
    first: what an operator looks at when a transaction seems stuck."""
    return list(
        session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.args["txn_id"].astext == txn_id)
            .order_by(OutboxMessage.id)
        )
    )


class Wakeups:
    """A connection of its own that LISTENs on ``CHANNEL``: ``add_message``'s NOTIFY,
    delivered when the writing transaction commits, wakes whoever waits here."""

    def __init__(self, connection: psycopg.Connection) -> None:
        self._connection = connection

    def wait(self, timeout: float) -> None:
        """Until a commit that wrote outbox rows, or ``timeout`` seconds. Every wake-up
        that arrived meanwhile is taken with it: one drain answers all of them."""
        for _ in self._connection.notifies(timeout=timeout, stop_after=1):
            pass
        for _ in self._connection.notifies(timeout=0):
            pass


@contextmanager
def wakeups(database_url: str) -> Iterator[Wakeups]:
    """Listen for outbox commits while the block runs. A lost connection raises out of
    ``Wakeups.wait``; the caller opens another."""
    with psycopg.connect(libpq_url(database_url), autocommit=True, connect_timeout=3) as conn:
        conn.execute(f"LISTEN {CHANNEL}")
        yield Wakeups(conn)
