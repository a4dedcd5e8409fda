"""Calls to a PSP from the workers, timed and counted, and their answers written down:
what each outcome means to the state machine, and the columns an answer writes (the
exchange kept for `data.meta`, the customer's next step, the error). Initiation,
inquiries and expiry all record their answers here (``record_psp_answer``)."""

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
from storage.psp_context import PspContext
from storage.reviews import Reported
from storage.transactions import apply_event
from storage.transitions import Answer, Seen, book

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


def record_psp_answer(
    txn_id: str, result: PspResult, source: Source, seen: Seen | None = None
) -> Status:
    """Apply a PSP answer (initiation, inquiry or cancel) and keep the exchange for
    `data.meta`. ``seen``: the row as the caller last wrote it (spares a read)."""
    with session_scope() as session:
        answer = answer_of(result)
        meta = answer.psp_meta

        def updates(_txn: Seen) -> dict[str, Any]:
            values: dict[str, Any] = {"error": answer.error, "psp_meta": meta}
            if result.psp_txn_id:
                values["psp_txn_id"] = result.psp_txn_id
            if answer.navigation:
                values["navigation"] = answer.navigation
            return values

        # A success settles only for the money asked for; apply_event holds anything else.
        applied = apply_event(
            session,
            txn_id,
            EVENT_FOR_OUTCOME[result.outcome],
            source,
            result.reason or result.psp_state,
            updates,
            reported=Reported(result.amount, result.currency, result.psp_state),
            seen=seen,
        )
        if applied.decision.noop:
            # The exchange is kept even when the status does not move (timeouts, late answers).
            book(session, txn_id, {"psp_meta": meta})
        if result.outcome is Outcome.UNKNOWN:
            log.warning("psp.answer_unknown", txn_id=txn_id, reason=result.reason)
        return applied.decision.status
