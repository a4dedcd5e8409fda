"""A run's result: its summary, and the day's result replaced by it, in the run's database
transaction (storage.recon.matching): the run row, the run before it superseded (its
bulk rows gone: a day keeps one result), the day's current run, and the merchant's
``reconciliation.completed`` notification with the summary."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.orm import Session

from connxt import tasks
from connxt.ids import random_id
from storage.outbox import add_message
from storage.recon.matching import Plan
from storage.recon.runs import Run
from storage.recon.vocabulary import DIFFERENCES, Class, RunStatus

NOTIFICATION_TYPE = "reconciliation.completed"
_ADJUSTMENTS = ("chargeback", "fee_adjustment")


def summarize(run: Run, aggregates: dict[str, Any], duration_ms: float) -> dict[str, Any]:
    """The run's summary (what `--json`, the API and the notification show): counts by
    class, the matched share, totals per currency, sums by class, adjustments. Amounts are
    decimal text, never floats."""
    lines_by_class: dict[str, int] = {}
    totals: dict[str, dict[str, Any]] = {}
    by_class: dict[str, dict[str, dict[str, Any]]] = {}
    adjustments: dict[str, dict[str, dict[str, Any]]] = {kind: {} for kind in _ADJUSTMENTS}
    for group in aggregates["lines"]:
        klass, currency = group["class"], group["currency"]
        lines_by_class[klass] = lines_by_class.get(klass, 0) + group["count"]
        _add(totals.setdefault(currency, _zero()), group)
        _add(by_class.setdefault(klass, {}).setdefault(currency, _zero()), group)
        if group["type"] in _ADJUSTMENTS:
            _add(adjustments[group["type"]].setdefault(currency, _zero()), group)
    differences = {c.value: int(aggregates["differences"].get(c.value, 0)) for c in DIFFERENCES}
    matched = lines_by_class.get(Class.MATCHED.value, 0)
    looked_at = matched + sum(differences.values())
    return {
        "runId": run.id,
        "pspId": run.psp_id,
        "date": run.day.isoformat(),
        "lines": sum(lines_by_class.values()),
        "transactions": sum(aggregates["transactions"].values()),
        "matched": matched,
        "differences": differences,
        "matchedShare": round(matched / looked_at, 4) if looked_at else 1.0,
        "linesByClass": lines_by_class,
        "transactionsByClass": dict(aggregates["transactions"]),
        "totals": _texts(totals),
        "totalsByClass": {klass: _texts(sums) for klass, sums in by_class.items()},
        "adjustments": {kind: _texts(sums) for kind, sums in adjustments.items()},
        "durationMs": round(duration_ms),
    }


def _zero() -> dict[str, Any]:
    return {"count": 0, "gross": Decimal(0), "fee": Decimal(0), "net": Decimal(0)}


def _add(into: dict[str, Any], group: dict[str, Any]) -> None:
    into["count"] += group["count"]
    for key in ("gross", "fee", "net"):
        into[key] += Decimal(group[key])


def _texts(sums: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        currency: {k: (f"{v:f}" if isinstance(v, Decimal) else v) for k, v in values.items()}
        for currency, values in sums.items()
    }


def complete(session: Session, plan: Plan, summary: dict[str, Any]) -> None:
    """Make the run the day's result; flushes, never commits."""
    connection = session.connection()
    connection.exec_driver_sql(
        "UPDATE recon_runs SET status = %(status)s, finished_at = now(), lines = %(lines)s,"
        " matched = %(matched)s, summary = %(summary)s::jsonb, error = NULL WHERE id = %(id)s",
        {
            "status": RunStatus.COMPLETED.value,
            "lines": summary["lines"],
            "matched": summary["matched"],
            "summary": orjson.dumps(summary).decode(),
            "id": plan.run_id,
        },
    )
    if plan.previous_run_id is not None and plan.previous_run_id != plan.run_id:
        previous = {"id": plan.previous_run_id}
        connection.exec_driver_sql(
            "UPDATE recon_runs SET status = 'SUPERSEDED' WHERE id = %(id)s", previous
        )
        # One result per day: the replaced run keeps its summary and differences, not its
        # million lines.
        for table in ("recon_lines", "recon_txn_results", "recon_adjustments"):
            connection.exec_driver_sql(f"DELETE FROM {table} WHERE run_id = %(id)s", previous)
    connection.exec_driver_sql(
        "INSERT INTO recon_days (psp_id, day, brand_id, environment_id, current_run_id)"
        " VALUES (%(psp)s, %(day)s, %(brand)s, %(env)s, %(run)s)"
        " ON CONFLICT (psp_id, day) DO UPDATE SET current_run_id = EXCLUDED.current_run_id,"
        " updated_at = now()",
        {
            "psp": plan.psp_id,
            "day": plan.day,
            "brand": plan.brand_id,
            "env": plan.environment_id,
            "run": plan.run_id,
        },
    )
    notify_merchant(session, plan, summary)


def transaction_classes(session: Session, run_id: str) -> dict[str, str]:
    """Every transaction the run looked at and its class: its row of ``recon_txn_results``
    (not settled by this report, settled another day, settled twice), else the class of
    its one line in this report."""
    rows = session.execute(
        text(
            "SELECT txn_id, class FROM recon_txn_results WHERE run_id = :run"
            " UNION ALL"
            " SELECT l.txn_id, l.class FROM recon_lines l"
            " WHERE l.run_id = :run AND l.txn_id IS NOT NULL"
            "   AND l.type IN ('payment', 'refund', 'payout')"
            "   AND NOT EXISTS (SELECT 1 FROM recon_txn_results r"
            "                   WHERE r.run_id = l.run_id AND r.txn_id = l.txn_id)"
        ),
        {"run": run_id},
    )
    return dict(rows.all())


def notify_merchant(session: Session, plan: Plan, summary: dict[str, Any]) -> None:
    """``reconciliation.completed`` to the environment, once per run, carrying the summary."""
    created = (
        session.connection()
        .exec_driver_sql(
            "INSERT INTO notifications (id, environment_id, event_type, status,"
            " next_attempt_at, recon_run_id, payload)"
            " VALUES (%(id)s, %(env)s, %(type)s, 'PENDING', now(), %(run)s, %(payload)s::jsonb)"
            " ON CONFLICT (recon_run_id, event_type) WHERE recon_run_id IS NOT NULL DO NOTHING"
            " RETURNING id",
            {
                "id": random_id("ntf"),
                "env": plan.environment_id,
                "type": NOTIFICATION_TYPE,
                "run": plan.run_id,
                "payload": orjson.dumps(summary).decode(),
            },
        )
        .scalar()
    )
    if created is not None:
        add_message(session, tasks.NOTIFY, {"notification_id": created})
