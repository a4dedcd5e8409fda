"""Handling one stored PSP webhook: the rules every handler keeps, in one place.

``handling(inbox_id)`` claims the row (counting the attempt), refuses one that was handled
already, and parks one that used up its attempts; the handler then records what became of
the webhook with ``Handling.record``, in the same database transaction as whatever the
webhook did (the transition it made, the inquiry it asked for), so a row is marked exactly
when its effect is committed. A handler that raises leaves the row for the re-drive
(workers.reconcile), its attempt counted.

The one-at-a-time path (workers.webhooks), re-drive and an operator's replay
(``connxt webhooks replay``) all go through here; a batch of webhooks (workers.webhook_batch)
claims and marks its rows as a set with the same storage.inbox statements, and hands any
row it cannot decide as a set to the one-at-a-time path.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import structlog
from sqlalchemy.orm import Session

from connxt.metrics import PARKED
from connxt.settings import get_settings
from storage import inbox
from storage.db import session_scope
from storage.psp_context import PspContext, load_psp_context

log = structlog.get_logger()


@dataclass
class Handling:
    """A claimed webhook, and what became of it once recorded."""

    inbox_id: int
    claimed: inbox.Claimed
    context: PspContext
    result: str | None = None  # what the row records
    outcome: str | None = None  # what the handler reports ("parked", "inquire", a status)

    @property
    def finished(self) -> bool:
        return self.result is not None

    def record(
        self, session: Session, result: str, outcome: str | None = None, parked: bool = False
    ) -> str:
        """Mark the row in the caller's transaction: ``result`` is what it stores,
        ``outcome`` what the handler answers (``result`` when not given); the outcome."""
        inbox.mark(session, self.inbox_id, result, parked=parked)
        self.result, self.outcome = result, outcome or result
        if parked:
            PARKED.labels("webhook").inc()
        return self.outcome


def attempts_used_up(inbox_id: int, claimed: inbox.Claimed) -> str | None:
    """What the row records when its webhook has used up its attempts (it is parked, for
    an operator to replay), else None. The one-at-a-time and the batch path both ask."""
    if claimed.attempts <= get_settings().task_max_attempts:
        return None
    log.error("webhook.parked", inbox_id=inbox_id, txn_id=claimed.txn_id)
    return f"parked after {claimed.attempts - 1} attempts"


@contextmanager
def handling(inbox_id: int) -> Iterator[Handling | None]:
    """The webhook to handle; None when another delivery handled it already. A webhook past
    its attempts comes back parked (``finished``): nothing is left to do."""
    with session_scope() as session:
        claimed = inbox.claim(session, inbox_id)
        context = None if claimed is None else load_psp_context(session, claimed.psp_id)
    if claimed is None or context is None:
        yield None
        return
    handled = Handling(inbox_id, claimed, context)
    used_up = attempts_used_up(inbox_id, claimed)
    if used_up is not None:
        with session_scope() as session:
            handled.record(session, used_up, "parked", parked=True)
    yield handled
    if not handled.finished:
        # Every way through a handler records a result; a row left unmarked would be
        # handled again by the re-drive, so this is loud rather than silent.
        log.error("webhook.unrecorded", inbox_id=inbox_id)
