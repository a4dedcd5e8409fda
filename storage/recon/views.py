"""The public shape of a reconciliation run and of a difference: the one place each is
shaped, for the API, the console and `connxt recon export` (documented by
api_gateway/reconciliation/schemas.py, which the suite checks every answer against).

Amounts are decimal text (``"49.00"``), as the run's summary and the merchant's
notification carry them: exact, and never read as floats by a client.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from connectors.money import minor_units
from storage.recon.differences import Difference
from storage.recon.runs import Run
from storage.recon.vocabulary import DIFFERENCES
from storage.transaction_view import api_time


def run_view(run: Run) -> dict[str, Any]:
    summary = run.summary or {}
    return {
        "id": run.id,
        "pspId": run.psp_id,
        "date": run.day.isoformat(),
        "status": run.status,
        "trigger": run.trigger,
        "attempts": run.attempts,
        "error": run.error,
        "lines": run.lines,
        "matched": run.matched,
        "matchedShare": summary.get("matchedShare"),
        "differences": (
            {c.value: summary["differences"].get(c.value, 0) for c in DIFFERENCES}
            if "differences" in summary
            else None
        ),
        "summary": run.summary,
        "createdAt": api_time(run.created_at),
        "startedAt": api_time(run.started_at),
        "finishedAt": api_time(run.finished_at),
    }


def difference_view(d: Difference) -> dict[str, Any]:
    ours, theirs = d.ours, d.theirs
    return {
        "id": d.id,
        "runId": d.run_id,
        "pspId": d.psp_id,
        "date": d.day.isoformat(),
        "class": d.klass,
        "state": d.state,
        "txnId": d.txn_id,
        "ours": None
        if ours is None
        else {
            "status": ours.get("status"),
            "action": ours.get("action"),
            "amount": money(ours.get("amount"), ours.get("currency")),
            "currency": ours.get("currency"),
        },
        "theirs": None
        if theirs is None
        else {
            "type": theirs.get("type"),
            "pspPaymentId": theirs.get("pspPaymentId"),
            "reference": theirs.get("reference"),
            "gross": theirs.get("gross"),
            "fee": theirs.get("fee"),
            "net": theirs.get("net"),
            "currency": theirs.get("currency"),
            "settledAt": _stamp(theirs.get("settledAt")),
        },
        "action": d.action,
        "firstSeenAt": api_time(d.first_seen_at),
        "resolution": None
        if d.note is None
        else {"note": d.note, "resolvedBy": d.resolved_by, "resolvedAt": api_time(d.resolved_at)},
    }


def money(text: str | None, currency: str | None) -> str | None:
    """A stored amount (eight places) with its currency's: ``200.00000000 USD`` → ``200.00``."""
    if text is None or currency is None:
        return text
    try:
        return f"{Decimal(text).quantize(Decimal(1).scaleb(-minor_units(currency))):f}"
    except InvalidOperation:
        return text


def _stamp(value: str | None) -> str | None:
    # JSONB keeps a timestamp as PostgreSQL writes it (``2025-01-15T10:05:00+00:00``).
    return api_time(datetime.fromisoformat(value)) if value else None
