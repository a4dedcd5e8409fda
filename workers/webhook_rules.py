"""The rules for a stored PSP webhook, in their order, as one pure function over what was
loaded: ``judge``. Every way a notification is handled (a set from the ingress, the
re-drive, an operator's replay) runs them through workers.webhooks; storage writes what
they decide (storage.inbox.record).

In order:

1. past ``CONNXT_TASK_MAX_ATTEMPTS``: parked, for an operator to replay;
2. its PSP account gone, or the body unparseable (e.g. stored before a key rotation):
   parked;
3. naming another transaction than stored, or one not of the account it came to:
   ignored, neither applied nor asked about;
4. unverified (no signing key): only a hint, a throttled inquiry (storage.inquiries);
5. verified but not checkable (a success without amount or currency while open, a
   non-success naming other money): the PSP is asked instead;
6. otherwise decided by the state machine, the money checked (storage.decisions): a
   success for other money, or after the transaction failed, is held for an operator,
   a contradiction of a final state recorded and never applied.

Out of order is normal here: the state machine makes a repeat a no-op, and the version
check makes two workers applying the same notification at once move the transaction once.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from connectors.base import ConnectorError, Outcome, WebhookEvent
from connxt import tasks
from state_machine import TERMINAL, Decision, Source, Status
from storage.decisions import decide
from storage.inbox import Claimed, Inquiry, Verdict
from storage.psp_context import PspContext
from storage.reviews import Reported
from storage.status_writes import Seen
from workers.psp_calls import EVENT_FOR_OUTCOME

log = structlog.get_logger()

IGNORED = "ignored: not a transaction of this PSP account"


@dataclass(frozen=True)
class Loaded:
    """A stored notification as claimed (its attempt counted, its transaction as read),
    and the PSP account it came to (None: not there)."""

    inbox_id: int
    claimed: Claimed
    context: PspContext | None


def judge(loaded: Loaded, max_attempts: int) -> Verdict:
    """What becomes of one stored notification. Pure (it logs)."""
    inbox_id, claimed, context = loaded.inbox_id, loaded.claimed, loaded.context
    if claimed.attempts > max_attempts:
        log.error("webhook.parked", inbox_id=inbox_id, txn_id=claimed.txn_id)
        return _parked(inbox_id, f"parked after {claimed.attempts - 1} attempts")
    if context is None:
        log.error("webhook.psp_missing", inbox_id=inbox_id, psp_id=claimed.psp_id)
        return _parked(inbox_id, f"parked: no PSP account {claimed.psp_id}")
    try:
        event = context.connector.parse_webhook(context.credential, claimed.headers, claimed.body)
    except ConnectorError as exc:  # e.g. stored before a key rotation: keep it for review
        return _parked(inbox_id, f"unparseable: {type(exc).__name__}")
    txn = claimed.txn
    if txn is None or event.txn_id != txn.id:
        log.warning("webhook.foreign_transaction", psp_id=claimed.psp_id, txn_id=event.txn_id)
        return Verdict(inbox_id, "ignored", IGNORED)
    # The PSP's own lane: a slow PSP must not hold up everybody's webhooks.
    queue = tasks.psp_queue(context.connector.name)
    if not event.verified:
        # Anyone can send these: at most one inquiry per window per transaction.
        return Verdict(inbox_id, "inquire", inquiry=Inquiry(txn.id, queue, throttled=True))
    instead = _inquiry_instead(inbox_id, txn, event)
    if instead is not None:
        return Verdict(inbox_id, "inquire", instead, inquiry=Inquiry(txn.id, queue))
    decided = decide(
        txn,
        EVENT_FOR_OUTCOME[event.outcome],
        Source.WEBHOOK,
        f"PSP state {event.psp_state}",
        Reported(event.amount, event.currency, event.psp_state, event.psp_txn_id),
        psp_txn_id=event.psp_txn_id,
    )
    outcome = outcome_of(decided.decision)
    return Verdict(inbox_id, outcome, outcome, decided=decided)


def _parked(inbox_id: int, result: str) -> Verdict:
    return Verdict(inbox_id, "parked", result, parked=True)


def _inquiry_instead(inbox_id: int, txn: Seen, event: WebhookEvent) -> str | None:
    """Why a verified notification is not acted on but the PSP asked instead; None when
    it can be applied."""
    completed = event.outcome is Outcome.COMPLETED
    unstated = event.amount is None or event.currency is None
    if completed and unstated and Status(txn.status) not in TERMINAL:
        # A success that does not say how much cannot be checked: the PSP's status
        # answer does say, and the inquiry compares it. (A finished transaction is not
        # asked about again: a success for it is recorded as a late success.)
        log.warning("webhook.amount_missing", txn_id=txn.id, inbox_id=inbox_id)
        return "success without amount or currency: inquiry instead"
    if not completed and not _names_our_money(txn, event):
        # No money moved, yet it names other money: ask the PSP rather than act on it.
        log.warning("webhook.amount_mismatch", txn_id=txn.id, inbox_id=inbox_id)
        return "amount or currency mismatch: inquiry instead"
    return None


def _names_our_money(txn: Seen, event: WebhookEvent) -> bool:
    if event.amount is not None and event.amount != txn.amount:
        return False
    return event.currency is None or event.currency.strip().upper() == txn.currency


def outcome_of(decision: Decision) -> str:
    """What the row records as the notification's result, and the handler reports."""
    if decision.review is not None:
        return decision.review.value  # held for an operator
    if decision.conflict:
        return "conflict"
    return decision.status.value
