"""Calls to a PSP from the workers, timed and counted, and their answers written down:
what each outcome means to the state machine, and the columns an answer writes (the
exchange kept for `data.meta`, the customer's next step, the error). Initiation,
inquiries and expiry all record their answers here (``record_psp_answers``, a set of one
for an inquiry)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import structlog

from connectors.base import Outcome, PspResult
from connxt.metrics import PSP_CALLS, labelled
from connxt.settings import get_settings
from state_machine import Event, Source, Status
from storage.db import session_scope
from storage.decisions import ROUNDS, Decided, decide, read_again, write
from storage.psp_context import PspContext
from storage.reviews import Reported
from storage.status_writes import Answer, Seen

log = structlog.get_logger()

# What each PSP outcome means to the state machine.
EVENT_FOR_OUTCOME = {
    Outcome.ACCEPTED: Event.PSP_ACCEPTED,
    Outcome.COMPLETED: Event.PSP_COMPLETED,
    Outcome.DECLINED: Event.PSP_DECLINED,
    Outcome.FAILED: Event.PSP_FAILED,
    Outcome.NOT_FOUND: Event.PSP_NOT_FOUND,
    Outcome.UNKNOWN: Event.PSP_UNKNOWN,
}


def callback_urls(txn_id: str, psp_id: str) -> tuple[str, str]:
    """(return URL for the browser, webhook URL for the PSP), both on our public base."""
    base = get_settings().public_url.rstrip("/")
    return (
        f"{base}/connxt/v2/external/redirects/{txn_id}",
        f"{base}/connxt/v2/external/webhooks/{psp_id}",
    )


_psp_call_seconds = labelled(PSP_CALLS)


def call_psp(context: PspContext, action: str, call: Callable[[], PspResult]) -> PspResult:
    """One connector operation (``initiate``, ``inquire``, ``cancel``), timed by PSP,
    action and result: what the PSP error-rate alert reads (deploy/prometheus)."""
    started = time.perf_counter()
    result = "error"
    try:
        answer = call()
        result = answer.outcome.value
        return answer
    finally:
        _psp_call_seconds(context.connector.name, action, result).observe(
            time.perf_counter() - started
        )


def psp_meta(result: PspResult) -> dict[str, Any]:
    """The PSP's last word and the exchanges behind it, as `data.meta` shows them."""
    return {
        "pspState": result.psp_state,
        "http": [exchange.as_dict() for exchange in result.exchanges],
    }


def _error(result: PspResult) -> dict[str, Any] | None:
    if result.outcome in (Outcome.ACCEPTED, Outcome.COMPLETED):
        return None
    return {"code": result.outcome.value, "message": result.reason or result.psp_state or ""}


def answer_of(result: PspResult) -> Answer:
    """The columns a PSP answer writes with its transition."""
    navigation = result.navigation.as_dict() if result.navigation else None
    return Answer(psp_meta(result), navigation, _error(result))


def answered(seen: Seen, result: PspResult, source: Source) -> Decided:
    """What a PSP's answer means for the transaction as read: the money checked, the
    exchange kept for `data.meta` whether or not the status moves. Pure."""
    return decide(
        seen,
        EVENT_FOR_OUTCOME[result.outcome],
        source,
        result.reason or result.psp_state,
        Reported(result.amount, result.currency, result.psp_state, result.psp_txn_id),
        psp_txn_id=result.psp_txn_id,
        answer=answer_of(result),
    )


def record_psp_answers(
    results: dict[str, PspResult],
    source: Source,
    seen: dict[str, Seen] | None = None,
    log_ids: dict[str, dict[str, str]] | None = None,
) -> dict[str, Decided]:
    """Write PSP answers (initiation, inquiry, cancel) in one database transaction: the
    transitions in one statement (storage.decisions.write), a decision another writer got
    ahead of decided again against the row as it is now. ``seen``: the rows as the caller
    last wrote them (spares a read). The decisions written, by transaction id."""
    seen = dict(seen or {})
    written: dict[str, Decided] = {}
    pending = list(results)
    with session_scope() as session:
        for _round in range(ROUNDS):
            missing = [txn_id for txn_id in pending if txn_id not in seen]
            if missing:
                seen.update(read_again(session, missing))
            decided = {
                txn_id: answered(seen[txn_id], results[txn_id], source) for txn_id in pending
            }
            lost = write(session, list(decided.values()))
            written.update((t, d) for t, d in decided.items() if t not in lost)
            if not lost:
                break
            pending = [txn_id for txn_id in pending if txn_id in lost]
            for txn_id in pending:
                del seen[txn_id]  # read again, decided again
        else:
            raise RuntimeError(f"could not settle {sorted(pending)} after concurrent updates")
    for txn_id, d in written.items():
        if not d.decision.noop:
            log.info(
                "transaction.transition",
                txn_id=txn_id,
                event_name=d.event.value,
                source=source.value,
                to_status=d.decision.status.value,
                **(log_ids or {}).get(txn_id, {}),
            )
        elif results[txn_id].outcome is Outcome.UNKNOWN:
            log.warning("psp.answer_unknown", txn_id=txn_id, reason=results[txn_id].reason)
    return written


def record_psp_answer(
    txn_id: str, result: PspResult, source: Source, seen: Seen | None = None
) -> Status:
    """Apply one PSP answer (an inquiry's, a cancel's): a set of one. The status after."""
    written = record_psp_answers({txn_id: result}, source, {txn_id: seen} if seen else None)
    return written[txn_id].decision.status
