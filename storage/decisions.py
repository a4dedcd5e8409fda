"""What an event means for a transaction, and the one way its status ever changes.

``decide`` asks the state machine what an event means for the transaction as read, the
money checked first: pure. ``write`` writes a set of decisions in the caller's database
transaction, each with a compare-and-set on ``version`` (docs/ARCHITECTURE.md §5.2): plain
transitions in one statement (storage.status_writes.move_many), holds for an operator and
contradictions of a final state one by one, and a PSP's exchange kept even when nothing
moves. A decision another writer got ahead of writes nothing and comes back: read the row
again and decide again. ``apply_event`` is that loop for one event with column values of
its own (expiry, an operator's decision).

A success settles only for the money asked for; anything else is held for an operator
(storage.reviews), and ``resolve_review`` is the operator's way out of a hold.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy.orm import Session

from connxt.metrics import CONFLICTS, TRANSITIONS
from state_machine import TERMINAL, Decision, Event, Source, Status, apply
from storage.models import Transaction
from storage.review_decisions import close_review, decision, record_decision, waiting_review
from storage.reviews import Reported, is_held, open_review
from storage.status_writes import (
    Answer,
    Move,
    Seen,
    keep_exchanges,
    move,
    move_many,
    read_seen,
    read_seen_many,
    record_unmoved,
)

log = structlog.get_logger()

# Rounds of "another writer moved first: read again, decide again" before giving up loudly.
ROUNDS = 10


class TransactionVanished(RuntimeError):
    """The row disappeared between read and write (never expected)."""


class NothingToResolve(Exception):
    """The transaction is not held for an operator: never was, or was decided already."""


@dataclass(frozen=True)
class Decided:
    """An event decided against a transaction as read: what ``write`` writes."""

    seen: Seen
    event: Event  # as checked against the money: a success for other money is a mismatch
    decision: Decision
    source: Source
    reason: str | None
    reported: Reported | None = None
    psp_txn_id: str | None = None  # written with a transition when set
    # A PSP's answer: its columns written with a transition, its exchange (data.meta) kept
    # on a no-op too.
    answer: Answer | None = None


def decide(
    seen: Seen,
    event: Event,
    source: Source,
    reason: str | None = None,
    reported: Reported | None = None,
    *,
    psp_txn_id: str | None = None,
    answer: Answer | None = None,
) -> Decided:
    """What ``event`` means for the transaction as read. Pure."""
    settling = _checked(event, reported, seen)
    decision = apply(Status(seen.status), settling, held=is_held(seen))
    return Decided(seen, settling, decision, source, reason, reported, psp_txn_id, answer)


def _checked(event: Event, reported: Reported | None, txn: Seen) -> Event:
    """A PSP success for other money than the transaction's (or for money it did not
    name) is a mismatch, whichever path brought it: answer, webhook or inquiry."""
    if event is Event.PSP_COMPLETED and (reported is None or not reported.matches(txn)):
        return Event.PSP_MISMATCH
    return event


def write(session: Session, decided: Sequence[Decided]) -> set[str]:
    """Write decisions about distinct transactions, in the caller's database transaction;
    the ids of those another writer changed first (nothing of theirs is written: read them
    again and decide again)."""
    moving = [d for d in decided if not d.decision.noop]
    moved = move_many(
        session,
        [Move(d.seen, d.decision, d.source, d.reason, d.psp_txn_id, d.answer) for d in moving],
    )
    lost = {d.seen.id for d in moving if d.seen.id not in moved}
    exchanges = []
    for d in decided:
        if not d.decision.noop:
            continue
        if not _write_noop(session, d):
            lost.add(d.seen.id)
        elif d.answer is not None:
            # The exchange is kept even when the status does not move (timeouts, late answers).
            exchanges.append((d.seen.id, d.answer.psp_meta))
    keep_exchanges(session, exchanges)
    for d in moving:
        if d.seen.id in moved:
            TRANSITIONS.labels(d.decision.status.value, d.source.value).inc()
    return lost


def _write_noop(session: Session, d: Decided) -> bool:
    """A no-op that still leaves a trace: a hold opened, a contradiction recorded. False
    when another writer changed the row first."""
    if d.decision.review is not None:
        # One review per distinct report: a repeat of what opened one (a duplicate webhook,
        # a second inquiry) finds it there and adds nothing.
        return open_review(session, d.seen, d.decision.review, d.source, d.reported)
    if d.decision.conflict:
        _record_conflict(session, d)
    return True


def _record_conflict(session: Session, d: Decided) -> None:
    """A PSP contradicting a final state: keep the state, leave a trail for review."""
    txn = d.seen
    reason = f"ignored {d.event.value}: {d.decision.reason}" + (
        f" ({d.reason})" if d.reason else ""
    )
    record_unmoved(session, txn, d.source, reason)
    CONFLICTS.labels(d.source.value).inc()
    log.warning(
        "transaction.conflicting_event",
        txn_id=txn.id,
        status=txn.status,
        event_name=d.event.value,
        source=d.source.value,
    )


def read_again(session: Session, txn_ids: Sequence[str]) -> dict[str, Seen]:
    """The rows of decisions that came back from ``write``, as they are now."""
    found = read_seen_many(session, list(txn_ids))
    for txn_id in txn_ids:
        if txn_id not in found:
            raise TransactionVanished(txn_id)
    return found


@dataclass(frozen=True)
class Applied:
    decision: Decision
    txn: Seen  # as read before the decision was written


def apply_event(
    session: Session,
    txn_id: str,
    event: Event,
    source: Source,
    reason: str | None = None,
    updates: Callable[[Seen], dict[str, Any]] | dict[str, Any] | None = None,
    reported: Reported | None = None,
    seen: Seen | None = None,
) -> Applied:
    """Apply ``event`` to the transaction, in the caller's database transaction.

    ``updates`` are extra column values written with the transition (an expiry's error,
    an operator's decision); a callable receives the row as read. They are written only
    when the status actually moves, so a late event can never overwrite what an earlier
    one set.

    ``reported`` is the money the PSP stated with its answer. A PSP_COMPLETED settles only
    when it is exactly the transaction's money; otherwise (other money, or none stated) the
    transaction is held for an operator and nothing but the operator settles it.

    ``seen`` spares the first read when the caller has just read (or written) the row; a
    stale one costs a compare-and-set that fails, and then the row is read again.
    """
    for _round in range(ROUNDS):
        txn = seen or read_seen(session, txn_id)
        seen = None
        if txn is None:
            raise TransactionVanished(txn_id)
        decided = decide(txn, event, source, reason, reported)
        decision = decided.decision
        if decision.noop:
            if not _write_noop(session, decided):
                continue
            return Applied(decision, txn)
        values = updates(txn) if callable(updates) else dict(updates or {})
        if not move(session, txn, decision, source, reason, values):
            continue  # another writer moved first: read again, decide again
        TRANSITIONS.labels(decision.status.value, source.value).inc()
        log.info(
            "transaction.transition",
            txn_id=txn_id,
            event_name=decided.event.value,
            source=source.value,
            to_status=decision.status.value,
        )
        return Applied(decision, txn)
    raise RuntimeError(f"could not settle {txn_id} after repeated concurrent updates")


def resolve_review(
    session: Session,
    txn_id: str,
    decided: Status,
    note: str,
    *,
    by: str,
    amount: Decimal | None = None,
    currency: str | None = None,
) -> Transaction:
    """An operator's decision on a held transaction, recorded with who (``by``) and why
    (``note``); flushes, never commits.

    An open one moves to ``decided`` through the state machine (the merchant is notified
    of the outcome as for any terminal transition). A terminal one (a late success) keeps
    its status: terminal statuses never change, so the decision is recorded beside it.
    SUCCESS records what was captured (storage.review_decisions.decision): the PSP's stated
    money, else ``amount`` (and ``currency``). Raises LookupError for an unknown id,
    NothingToResolve when nothing is held, CannotCapture when the money cannot be told.
    """
    if decided not in (Status.SUCCESS, Status.FAILED):
        raise ValueError(f"an operator decides SUCCESS or FAILED, not {decided}")
    for attempt in range(ROUNDS):
        txn = session.get(Transaction, txn_id, populate_existing=attempt > 0)
        if txn is None:
            raise LookupError(txn_id)
        if not is_held(txn):
            raise NothingToResolve(txn_id)
        review = waiting_review(session, txn)
        values = decision(txn, review, decided, note, by, amount, currency)
        reason = f"{txn.review_reason} resolved {decided.value}: {note} (by {by})"
        if Status(txn.status) in TERMINAL:
            if record_decision(session, txn, review, values, reason):
                return txn
            session.expire(txn)
            continue
        event = Event.RESOLVE_SUCCESS if decided is Status.SUCCESS else Event.RESOLVE_FAILED
        updates = dict(values)
        if decided is Status.FAILED:
            assert txn.review_reason is not None  # is_held(txn), checked above
            updates["error"] = {"code": txn.review_reason.upper(), "message": note}
        applied = apply_event(session, txn_id, event, Source.OPERATOR, reason, updates)
        if applied.decision.noop:
            raise NothingToResolve(txn_id)  # decided by another operator meanwhile
        close_review(session, review, values)
        resolved = session.get(Transaction, txn_id, populate_existing=True)
        assert resolved is not None  # just updated: its row is locked until the commit
        return resolved
    raise RuntimeError(f"could not resolve {txn_id} after repeated concurrent updates")
