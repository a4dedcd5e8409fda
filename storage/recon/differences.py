"""What runs found not matched, and what became of it.

A difference belongs to the run that found it, with both sides as that run saw them. It is
*open* while the day's current run still finds it (the same ``subject``) and nobody has
resolved it; *resolved* once an operator (or an automatic fix: storage.recon's callers)
wrote a note, which holds for every later run finding the same subject; *cleared* when a
later run of the day no longer finds it (it settled late, say).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from storage.db import session_scope
from storage.recon.runs import Scope

_SELECT = """
SELECT x.id, x.run_id, x.psp_id, x.day, x.class, x.subject, x.txn_id, x.line_no, x.ours,
       x.theirs, x.action, x.first_seen_at, x.created_at,
       res.note, res.resolved_by, res.resolved_at,
       CASE WHEN res.subject IS NOT NULL THEN 'resolved'
            WHEN cur.id IS NULL THEN 'cleared'
            ELSE 'open' END AS state
FROM recon_differences x
LEFT JOIN recon_resolutions res
  ON res.psp_id = x.psp_id AND res.day = x.day AND res.subject = x.subject
LEFT JOIN recon_days d ON d.psp_id = x.psp_id AND d.day = x.day
LEFT JOIN recon_differences cur ON cur.run_id = d.current_run_id AND cur.subject = x.subject
"""


@dataclass(frozen=True)
class Difference:
    id: int
    run_id: str
    psp_id: str
    day: date
    klass: str
    subject: str
    txn_id: str | None
    line_no: int | None
    ours: dict[str, Any] | None
    theirs: dict[str, Any] | None
    action: str | None
    first_seen_at: datetime
    created_at: datetime
    note: str | None
    resolved_by: str | None
    resolved_at: datetime | None
    state: str  # open | resolved | cleared


def _difference(row: Any) -> Difference:
    values = dict(row)
    values["klass"] = values.pop("class")
    return Difference(**values)


def _scope(scope: Scope) -> tuple[str, dict[str, Any]]:
    if scope is None:
        return "TRUE", {}
    return (
        "x.brand_id = :scope_brand AND x.environment_id = :scope_env",
        {"scope_brand": scope[0], "scope_env": scope[1]},
    )


def of_run(
    session: Session,
    scope: Scope,
    run_id: str,
    *,
    limit: int = 100,
    after_id: int = 0,
    klass: str | None = None,
) -> list[Difference]:
    """The run's differences in the order found (by id), a page at a time."""
    condition, params = _scope(scope)
    where = f"x.run_id = :run AND x.id > :after AND {condition}"
    if klass is not None:
        where += " AND x.class = :klass"
    rows = session.execute(
        text(f"{_SELECT} WHERE {where} ORDER BY x.id LIMIT :limit"),
        {"run": run_id, "after": after_id, "limit": limit, "klass": klass, **params},
    ).mappings()
    return [_difference(row) for row in rows]


def all_of_run(session: Session, scope: Scope, run_id: str) -> Iterator[Difference]:
    """Every difference of the run, page after page (the export)."""
    after = 0
    while True:
        page = of_run(session, scope, run_id, limit=1000, after_id=after)
        yield from page
        if len(page) < 1000:
            return
        after = page[-1].id


def get(session: Session, scope: Scope, difference_id: int) -> Difference | None:
    condition, params = _scope(scope)
    row = (
        session.execute(
            text(f"{_SELECT} WHERE x.id = :id AND {condition}"), {"id": difference_id, **params}
        )
        .mappings()
        .first()
    )
    return _difference(row) if row else None


class AlreadyResolved(Exception):
    """Someone resolved this difference (for this account, day and subject) first."""


def resolve(
    session: Session, scope: Scope, difference_id: int, note: str, resolved_by: str
) -> Difference:
    """Record an operator's resolution of the difference, with a note; flushes, never
    commits. LookupError when the scope cannot see it, AlreadyResolved when it was."""
    found = get(session, scope, difference_id)
    if found is None:
        raise LookupError(difference_id)
    written = session.execute(
        text(
            "INSERT INTO recon_resolutions (psp_id, day, subject, difference_id, note,"
            " resolved_by) VALUES (:psp, :day, :subject, :id, :note, :by)"
            " ON CONFLICT DO NOTHING RETURNING subject"
        ),
        {
            "psp": found.psp_id,
            "day": found.day,
            "subject": found.subject,
            "id": difference_id,
            "note": note,
            "by": resolved_by,
        },
    ).first()
    if written is None:
        raise AlreadyResolved(difference_id)
    return get(session, scope, difference_id)  # type: ignore[return-value]


def needing_action(session: Session, run_id: str, limit: int) -> list[dict[str, Any]]:
    """The run's differences an automatic fix may settle (status and amount mismatches of a
    known transaction, not resolved), with the transaction's status and review."""
    rows = session.execute(
        text(
            "SELECT x.id, x.class, x.txn_id, x.theirs, t.status, t.review_reason"
            " FROM recon_differences x JOIN transactions t ON t.id = x.txn_id"
            " LEFT JOIN recon_resolutions res"
            "   ON res.psp_id = x.psp_id AND res.day = x.day AND res.subject = x.subject"
            " WHERE x.run_id = :run AND x.class IN ('status_mismatch', 'amount_mismatch')"
            "   AND res.subject IS NULL ORDER BY x.id LIMIT :limit"
        ),
        {"run": run_id, "limit": limit},
    ).mappings()
    return [dict(row) for row in rows]


def record_action(session: Session, difference_id: int, action: str) -> None:
    session.execute(
        text("UPDATE recon_differences SET action = :action WHERE id = :id"),
        {"action": action, "id": difference_id},
    )


def open_stats_now() -> tuple[int, float]:
    """``open_stats`` in a session of its own: what beat's metrics read at each scrape."""
    with session_scope() as session:
        return open_stats(session)


def open_stats(session: Session) -> tuple[int, float]:
    """Open differences of every day's current run that mean money may be wrong (not
    ``pending``): how many, and how long the oldest has been known (seconds)."""
    row = session.execute(
        text(
            "SELECT count(*), coalesce(extract(epoch FROM now() - min(x.first_seen_at)), 0)"
            " FROM recon_days d JOIN recon_differences x ON x.run_id = d.current_run_id"
            " LEFT JOIN recon_resolutions res"
            "   ON res.psp_id = x.psp_id AND res.day = x.day AND res.subject = x.subject"
            " WHERE d.current_run_id IS NOT NULL AND x.class <> 'pending'"
            "   AND res.subject IS NULL"
        )
    ).one()
    return int(row[0]), float(row[1])


def adjustments_of(
    session: Session, scope: Scope, run_id: str, limit: int = 500
) -> list[dict[str, Any]]:
    """The run's chargebacks and fee adjustments, for an operator."""
    condition = "TRUE" if scope is None else "r.brand_id = :b AND r.environment_id = :e"
    params = {} if scope is None else {"b": scope[0], "e": scope[1]}
    rows = session.execute(
        text(
            "SELECT a.line_no, a.type, a.txn_id, a.psp_payment_id, a.gross, a.fee, a.net,"
            " a.currency, a.settled_at FROM recon_adjustments a"
            " JOIN recon_runs r ON r.id = a.run_id"
            f" WHERE a.run_id = :run AND {condition} ORDER BY a.line_no LIMIT :limit"
        ),
        {"run": run_id, "limit": limit, **params},
    ).mappings()
    return [dict(row) for row in rows]
