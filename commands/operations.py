"""Operator commands: `connxt txn show`, `connxt txn resolve`, `connxt reconcile`,
`connxt webhooks replay`."""

from __future__ import annotations

import json

import orjson
from sqlalchemy import select

from storage import notifications as notification_repo
from storage.db import session_scope
from storage.inbox import for_transaction, rearm
from storage.models import InboxMessage, OutboxMessage, Transaction
from storage.transaction_view import api_time, event_view, transaction_view


def _print_section(title: str, rows: list[str]) -> None:
    print(f"\n{title}")
    for row in rows or ["(none)"]:
        print(f"  {row}")


def show_transaction(txn_id: str) -> int:
    from connectors.money import minor_units
    from storage.transactions import events_of

    with session_scope() as session:
        txn = session.get(Transaction, txn_id)
        if txn is None:
            print(f"no transaction {txn_id}")
            return 1
        view = transaction_view(txn, minor_units(txn.currency))
        history = [event_view(e) for e in events_of(session, txn_id)]
        inbox = for_transaction(session, txn_id)
        outbox = session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.args["txn_id"].astext == txn_id)
            .order_by(OutboxMessage.id)
        ).all()
        notifications = notification_repo.for_transaction(session, txn_id)
        meta = txn.psp_meta  # stored already redacted
        print(orjson.dumps(view, option=orjson.OPT_INDENT_2).decode())
        _print_section(
            "events",
            [
                f"{e['createdAt']}  {e['fromStatus']} → {e['toStatus']}  [{e['source']}] "
                f"{e['reason'] or ''}"
                for e in history
            ],
        )
        _print_section(
            "PSP exchanges (redacted)",
            [json.dumps(x, default=str) for x in (meta or {}).get("http", [])],
        )
        _print_section(
            "inbox (PSP notifications)",
            [
                f"#{m.id} {m.event_key} verified={m.verified} attempts={m.attempts} "
                f"processed={api_time(m.processed_at)} parked={api_time(m.parked_at)} "
                f"result={m.result}"
                for m in inbox
            ],
        )
        _print_section(
            "outbox (tasks not sent yet: a row is deleted once its task left)",
            [
                f"#{m.id} {m.task} queue={m.queue} created={api_time(m.created_at)} "
                f"attempts={m.attempts} parked={api_time(m.parked_at)}"
                for m in outbox
            ],
        )
        _print_section(
            "merchant notifications",
            [
                f"{n.id} {n.event_type} {n.status} attempts={n.attempts} "
                + ", ".join(str(a.status_code or a.error) for a in attempts)
                for n, attempts in notifications
            ],
        )
    return 0


def reconcile_now(txn_id: str | None) -> int:
    """Run one reconciliation pass here, in this process, and print what it did."""
    from workers.initiation import initiate_transaction
    from workers.inquiry import inquire_transaction
    from workers.locks import LockBusy, transaction_lock
    from workers.reconcile import due_for_inquiry

    due = due_for_inquiry(txn_id=txn_id) if txn_id else due_for_inquiry()
    if not due:
        print("nothing to reconcile")
    for item in due:
        due_id = item.txn_id
        try:
            with transaction_lock(due_id):
                if item.needs_initiation:
                    initiate_transaction(due_id)
                    status = None
                else:
                    status = inquire_transaction(due_id)
        except LockBusy:
            print(f"{due_id}: busy in a worker, skipped")
            continue
        if item.needs_initiation:
            print(f"{due_id}: initiation resumed")
        else:
            print(f"{due_id}: {status.value if status else 'unknown'}")
    return 0


def replay_inbox(inbox_id: int) -> int:
    """Un-park a stored notification and process it again, here and now."""
    from workers.webhooks import process_inbox_message

    with session_scope() as session:
        message = session.get(InboxMessage, inbox_id)
        if message is None:
            print(f"no inbox message {inbox_id}")
            return 1
        rearm(session, inbox_id)
    outcome = process_inbox_message(inbox_id)
    print(f"inbox #{inbox_id}: {outcome}")
    return 0


def resolve_transaction(txn_id: str, decided: str, note: str) -> int:
    """An operator's decision on a transaction held for review (see storage.reviews)."""
    from state_machine import Status
    from storage.transactions import NothingToResolve, resolve_review
    from workers.locks import LockBusy, transaction_lock

    try:
        # The lock keeps a worker's PSP call for this transaction out of the way; the
        # version check in resolve_review is what makes the decision safe.
        with transaction_lock(txn_id), session_scope() as session:
            before = session.get(Transaction, txn_id)
            status_before = before.status if before is not None else None
            txn = resolve_review(session, txn_id, Status(decided), note)
            reason, status_after = txn.review_reason, txn.status
    except LookupError:
        print(f"no transaction {txn_id}")
        return 1
    except NothingToResolve:
        print(f"{txn_id}: not held for review (never was, or decided already)")
        return 1
    except LockBusy:
        print(f"{txn_id}: busy in a worker, try again")
        return 1
    if status_after == status_before:
        print(f"{txn_id}: {reason} resolved {decided}; status stays {status_after}")
    else:
        print(f"{txn_id}: {reason} resolved: {status_before} → {status_after}")
    return 0
