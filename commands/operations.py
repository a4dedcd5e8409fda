"""Operator commands: `connxt txn show`, `connxt txn resolve`, `connxt reconcile`,
`connxt webhooks replay`, `connxt psps check`."""

from __future__ import annotations

import json

import orjson

from commands.audit import cli_actor
from commands.exits import NOT_FOUND, fail
from storage import audit
from storage import notifications as notification_repo
from storage import outbox as outbox_repo
from storage.db import session_scope
from storage.inbox import for_transaction
from storage.operator_actions import rearm_webhook
from storage.reviews import reviews_of
from storage.transaction_view import (
    api_time,
    event_view,
    review_row_view,
    review_view,
    transaction_view,
)
from storage.transactions import get_in_scope


def _print_section(title: str, rows: list[str]) -> None:
    print(f"\n{title}")
    for row in rows or ["(none)"]:
        print(f"  {row}")


def show_transaction(txn_id: str, as_json: bool = False) -> int:
    from connectors.money import minor_units
    from storage.transactions import events_of

    with session_scope() as session:
        txn = get_in_scope(session, None, txn_id)  # an operator's: every tenant's
        if txn is None:
            return fail(f"no transaction {txn_id}", NOT_FOUND)
        view = transaction_view(txn, minor_units(txn.currency))
        history = [event_view(e) for e in events_of(session, txn_id)]
        inbox = for_transaction(session, txn_id)
        outbox = outbox_repo.for_transaction(session, txn_id)
        notifications = notification_repo.for_transaction(session, txn_id)
        meta = txn.psp_meta  # stored already redacted
        reviews = [review_row_view(r) for r in reviews_of(session, txn_id)]
        if as_json:
            print(
                orjson.dumps(
                    {
                        **view,
                        "events": history,
                        "reviews": reviews or list(filter(None, [review_view(txn)])),
                        "pspExchanges": (meta or {}).get("http", []),
                        "inbox": [_inbox_item(m) for m in inbox],
                        "outbox": [_outbox_item(m) for m in outbox],
                        "notifications": [
                            _notification_item(n, attempts) for n, attempts in notifications
                        ],
                    },
                    default=str,
                ).decode()
            )
            return 0
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
            "reviews (the transaction shows the one waiting, or the last decided)",
            [_review_line(r) for r in reviews or filter(None, [review_view(txn)])],
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


def _inbox_item(message) -> dict:
    return {
        "id": message.id,
        "eventKey": message.event_key,
        "verified": message.verified,
        "attempts": message.attempts,
        "processedAt": api_time(message.processed_at),
        "parkedAt": api_time(message.parked_at),
        "result": message.result,
    }


def _outbox_item(message) -> dict:
    return {
        "id": message.id,
        "task": message.task,
        "queue": message.queue,
        "createdAt": api_time(message.created_at),
        "attempts": message.attempts,
        "parkedAt": api_time(message.parked_at),
    }


def _notification_item(notification, attempts) -> dict:
    return {
        "id": notification.id,
        "eventType": notification.event_type,
        "status": notification.status,
        "attempts": [a.status_code or a.error for a in attempts],
    }


def _review_line(review: dict) -> str:
    told = f"{review['openedAt']}  {review['reason']}: the PSP reported "
    told += f"{review['pspAmount'] or '?'} {review['pspCurrency'] or ''} "
    told += f"(state {review['pspState'] or '?'}, via {review['source'] or '?'})"
    if review["resolvedAt"] is None:
        return told + "  waiting for a decision"
    return (
        f"{told}  resolved {review['resolution']} {review['resolvedAt']} "
        f"by {review['resolvedBy'] or '?'}: {review['note']}"
    )


def reconcile_now(txn_id: str | None) -> int:
    """Run one reconciliation pass here, in this process, and print what it did."""
    from workers.initiation import initiate_transaction
    from workers.inquiry import inquire_transaction
    from workers.locks import LockBusy, transaction_lock
    from workers.reconcile import due_for_inquiry

    due = due_for_inquiry(txn_id=txn_id) if txn_id else due_for_inquiry()
    with session_scope() as session:
        audit.record(
            session,
            cli_actor(),
            "reconcile.run",
            txn_id or "open transactions",
            None,
            {"due": len(due)},
        )
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
        rearmed = rearm_webhook(session, inbox_id)
        if rearmed is None:
            return fail(f"no inbox message {inbox_id}", NOT_FOUND)
        audit.record(
            session,
            cli_actor(),
            "webhook.replayed",
            rearmed.txn_id or f"inbox #{inbox_id}",
            {"parkedAt": api_time(rearmed.parked_at), "result": rearmed.result},
            {"inboxId": inbox_id},
            scope=rearmed.tenant,
        )
    outcome = process_inbox_message(inbox_id)
    print(f"inbox #{inbox_id}: {outcome}")
    return 0


def resolve_transaction(
    txn_id: str,
    decided: str,
    note: str,
    operator: str,
    amount: str | None = None,
    currency: str | None = None,
) -> int:
    """An operator's decision on a transaction held for review (see storage.reviews),
    recorded with who decided and why; SUCCESS records what was captured."""
    from decimal import Decimal, InvalidOperation

    from state_machine import Status
    from storage.decisions import NothingToResolve, resolve_review
    from storage.review_decisions import CannotCapture
    from workers.locks import LockBusy, transaction_lock

    try:
        paid = None if amount is None else Decimal(amount.strip())
    except InvalidOperation:
        return fail(f"{txn_id}: --amount is a decimal number, e.g. 5.00")
    try:
        # The lock keeps a worker's PSP call for this transaction out of the way; the
        # version check in resolve_review is what makes the decision safe.
        with transaction_lock(txn_id), session_scope() as session:
            before = get_in_scope(session, None, txn_id)
            status_before = before.status if before is not None else None
            txn = resolve_review(
                session,
                txn_id,
                Status(decided),
                note,
                by=operator,
                amount=paid,
                currency=currency,
            )
            reason, status_after = txn.review_reason, txn.status
            captured = (txn.captured_amount, txn.captured_currency)
            audit.record(
                session,
                cli_actor(),
                "review.resolved",
                txn_id,
                {"status": status_before, "review": reason},
                {"status": status_after, "resolution": decided, "note": note, "by": operator},
            )
    except LookupError:
        return fail(f"no transaction {txn_id}", NOT_FOUND)
    except NothingToResolve:
        return fail(f"{txn_id}: not held for review (never was, or decided already)")
    except CannotCapture as refused:
        return fail(f"{txn_id}: not resolved: {refused}")
    except LockBusy:
        return fail(f"{txn_id}: busy in a worker, try again")
    took = f" ({captured[0]:f} {captured[1]} captured)" if decided == "SUCCESS" else ""
    if status_after == status_before:
        print(f"{txn_id}: {reason} resolved {decided}{took}; status stays {status_after}")
    else:
        print(f"{txn_id}: {reason} resolved: {status_before} → {status_after}{took}")
    return 0


def check_psps(as_json: bool = False) -> int:
    """List the PSP accounts whose webhooks cannot be verified (no signing key). In
    production their unsigned webhooks are refused: exit 1 while there is one."""
    from connxt.secrets import key_ring
    from connxt.settings import get_settings
    from storage.psp_signing import unsigned_accounts

    with session_scope() as session:
        accounts = unsigned_accounts(session, key_ring())
    production = get_settings().is_production
    if as_json:
        found = [
            {
                "pspId": account.psp_id,
                "connector": account.connector,
                "name": account.name,
                "tenant": account.tenant,
                "missing": account.field,
            }
            for account in accounts
        ]
        print(json.dumps({"unsignedAccounts": found, "refusedHere": production}))
        return 1 if production and accounts else 0
    for account in accounts:
        print(
            f"{account.psp_id}  {account.connector}  {account.name!r}  {account.tenant}  "
            f"no {account.field}"
        )
    if not accounts:
        print("every PSP account that can sign its webhooks has its signing key")
        return 0
    print(
        f"{len(accounts)} PSP account(s) without a webhook signing key: "
        + (
            "their webhooks are refused in production. "
            if production
            else "in development their webhooks only prompt an inquiry; production refuses them. "
        )
        + "Add the key with PATCH /connxt/v2/psps/{id} (the whole credential)."
    )
    return 1 if production else 0
