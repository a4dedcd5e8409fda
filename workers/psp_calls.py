"""What a task needs to talk to a transaction's PSP: its connector and open credential."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.base import Connector, Outcome, PspResult
from connectors.registry import get_connector
from connxt.metrics import PSP_CALLS, labelled
from connxt.secrets import key_ring
from connxt.settings import get_settings
from connxt.ttl_cache import TtlCache
from state_machine import Event
from storage.models import FlowTarget, Psp
from storage.psps import open_credential

# What each PSP outcome means to the state machine.
EVENT_FOR_OUTCOME = {
    Outcome.ACCEPTED: Event.PSP_ACCEPTED,
    Outcome.COMPLETED: Event.PSP_COMPLETED,
    Outcome.DECLINED: Event.PSP_DECLINED,
    Outcome.FAILED: Event.PSP_FAILED,
    Outcome.NOT_FOUND: Event.PSP_NOT_FOUND,
    Outcome.UNKNOWN: Event.PSP_UNKNOWN,
}


@dataclass(frozen=True)
class PspContext:
    psp_id: str
    connector: Connector
    credential: dict[str, Any]


def find_psp_context(session: Session, psp_id: str) -> PspContext | None:
    """The PSP's connector and open credential, in one query; None for an unknown PSP."""
    row = session.execute(
        select(Psp, FlowTarget.name)
        .join(FlowTarget, FlowTarget.id == Psp.flow_target_id)
        .where(Psp.id == psp_id)
    ).one_or_none()
    if row is None:
        return None
    psp, target_name = row
    return PspContext(psp.id, get_connector(target_name), open_credential(key_ring(), psp))


# Open credentials are kept for seconds: reading and decrypting them for every payment
# would cost a query and an AES open each. A rotated credential is used within this bound.
_contexts: TtlCache[str, PspContext] = TtlCache(get_settings().psp_cache_seconds)


def load_psp_context(session: Session, psp_id: str) -> PspContext:
    """As find_psp_context, for a PSP a stored transaction already names."""
    context = _contexts.get_or_load(psp_id, lambda: find_psp_context(session, psp_id))
    if context is None:
        raise LookupError(f"no PSP {psp_id}")
    return context


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
