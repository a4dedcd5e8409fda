"""Runs of one PSP account and day: asked for, started, failed, listed. Every read takes the
viewer's scope: a tenant sees its own runs only; an operator (scope None) every tenant's."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.orm import Session

from connectors.base import SettlementReports
from connectors.registry import all_connectors
from connxt import tasks
from connxt.ids import random_id
from storage.outbox import add_message
from storage.recon.vocabulary import RunStatus, Trigger

# Whose rows a query may see: (brand id, environment id), or None for every tenant's.
Scope = tuple[str, str] | None

COLUMNS = (
    "r.id, r.brand_id, r.environment_id, r.psp_id, p.name AS psp_name, r.day, r.status,"
    " r.trigger, r.requested_by, r.attempts, r.error, r.lines, r.matched, r.summary,"
    " r.created_at, r.started_at, r.finished_at"
)


@dataclass(frozen=True)
class Run:
    id: str
    brand_id: str
    environment_id: str
    psp_id: str
    psp_name: str
    day: date
    status: str
    trigger: str
    requested_by: str | None
    attempts: int
    error: str | None
    lines: int | None
    matched: int | None
    summary: dict[str, Any] | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


def _scoped(scope: Scope, alias: str = "r") -> tuple[str, dict[str, Any]]:
    if scope is None:
        return "TRUE", {}
    condition = f"{alias}.brand_id = :scope_brand AND {alias}.environment_id = :scope_env"
    return condition, {"scope_brand": scope[0], "scope_env": scope[1]}


def _runs(session: Session, where: str, params: dict[str, Any], tail: str = "") -> list[Run]:
    rows = session.execute(
        text(
            f"SELECT {COLUMNS} FROM recon_runs r JOIN psps p ON p.id = r.psp_id"
            f" WHERE {where} {tail}"
        ),
        params,
    ).mappings()
    return [Run(**row) for row in rows]


def psp_in_scope(session: Session, scope: Scope, psp_id: str) -> dict[str, Any] | None:
    """The PSP account (id, tenant, status, flow target name), if ``scope`` may see it."""
    condition, params = _scoped(scope, "p")
    row = (
        session.execute(
            text(
                "SELECT p.id, p.brand_id, p.environment_id, p.status, p.created_at,"
                " ft.name AS target"
                " FROM psps p JOIN flow_targets ft ON ft.id = p.flow_target_id"
                f" WHERE p.id = :psp_id AND {condition}"
            ),
            {"psp_id": psp_id, **params},
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


def reporting_zones() -> dict[str, str]:
    """Flow target name → settlement time zone, for every connector with reports."""
    return {
        name: connector.settlement_zone
        for name, connector in all_connectors().items()
        if isinstance(connector, SettlementReports)
    }


def reporting_psp_ids(session: Session, psp_ids: list[str]) -> set[str]:
    """Those of ``psp_ids`` whose PSP publishes settlement reports, in one query."""
    if not psp_ids:
        return set()
    rows = session.execute(
        text(
            "SELECT p.id, ft.name FROM psps p JOIN flow_targets ft ON ft.id = p.flow_target_id"
            " WHERE p.id = ANY(:ids)"
        ),
        {"ids": psp_ids},
    )
    zones = reporting_zones()
    return {psp_id for psp_id, target in rows if target in zones}


class NoReport(ValueError):
    """There is no settlement report to reconcile; ``field`` names what was asked wrongly
    (``pspId`` or ``date``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def reportable_psp(session: Session, scope: Scope, psp_id: str, day: date) -> dict[str, Any] | None:
    """The PSP account ``scope`` may see (as psp_in_scope), checked to have a settlement
    report for ``day``: NoReport when its PSP publishes none or the day has not begun in the
    PSP's time zone. The API, the console and the command line all ask this."""
    psp = psp_in_scope(session, scope, psp_id)
    if psp is None:
        return None
    zone = reporting_zones().get(psp["target"])
    if zone is None:
        raise NoReport("pspId", f"{psp['target']} publishes no settlement reports Connxt can read")
    if day > datetime.now(ZoneInfo(zone)).date():
        raise NoReport("date", f"{day} has not begun at {psp['target']}: there is no report yet")
    return psp


def create_run(
    session: Session,
    psp: dict[str, Any],
    day: date,
    trigger: Trigger,
    requested_by: str | None = None,
    enqueue: bool = True,
) -> Run:
    """A QUEUED run of ``psp`` (as ``psp_in_scope`` read it) and ``day``; flushes, never
    commits. ``enqueue``: a ``recon.run`` message leaves for the reconcile lane at commit
    (the command runs its own in-process instead)."""
    run_id = random_id("rcn")
    session.execute(
        text(
            "INSERT INTO recon_runs (id, brand_id, environment_id, psp_id, day, status, trigger,"
            " requested_by) VALUES (:id, :brand, :env, :psp, :day, :status, :trigger, :by)"
        ),
        {
            "id": run_id,
            "brand": psp["brand_id"],
            "env": psp["environment_id"],
            "psp": psp["id"],
            "day": day,
            "status": RunStatus.QUEUED.value,
            "trigger": trigger.value,
            "by": requested_by,
        },
    )
    if enqueue:
        enqueue_run(session, run_id)
    return get_run(session, None, run_id)  # type: ignore[return-value]


def enqueue_run(session: Session, run_id: str) -> None:
    add_message(session, tasks.RECON_RUN, {"run_id": run_id}, queue=tasks.RECONCILE_QUEUE)


def get_run(session: Session, scope: Scope, run_id: str) -> Run | None:
    condition, params = _scoped(scope)
    found = _runs(session, f"r.id = :run_id AND {condition}", {"run_id": run_id, **params})
    return found[0] if found else None


def list_runs(
    session: Session,
    scope: Scope,
    *,
    limit: int = 50,
    psp_id: str | None = None,
    day: date | None = None,
    before: tuple[date, datetime, str] | None = None,
) -> list[Run]:
    """Newest day first, then newest run; ``before``: the (day, created_at, id) of the last
    run of the previous page."""
    condition, params = _scoped(scope)
    where = [condition]
    if psp_id is not None:
        where.append("r.psp_id = :psp_id")
        params["psp_id"] = psp_id
    if day is not None:
        where.append("r.day = :day")
        params["day"] = day
    if before is not None:
        where.append("(r.day, r.created_at, r.id) < (:b_day, :b_created, :b_id)")
        params.update(b_day=before[0], b_created=before[1], b_id=before[2])
    order = "ORDER BY r.day DESC, r.created_at DESC, r.id DESC LIMIT :limit"
    return _runs(session, " AND ".join(where), {**params, "limit": limit}, order)


def mark_running(session: Session, run_id: str) -> Run | None:
    """The run starts (again, if its last attempt died): None when it is no longer to be
    run (completed, superseded or failed already)."""
    moved = session.execute(
        text(
            "UPDATE recon_runs SET status = 'RUNNING', started_at = now(),"
            " attempts = attempts + 1, error = NULL"
            " WHERE id = :id AND status IN ('QUEUED', 'RUNNING') RETURNING id"
        ),
        {"id": run_id},
    ).first()
    return get_run(session, None, run_id) if moved else None


def mark_failed(session: Session, run_id: str, error: str) -> None:
    session.execute(
        text(
            "UPDATE recon_runs SET status = 'FAILED', error = :error, finished_at = now()"
            " WHERE id = :id AND status IN ('QUEUED', 'RUNNING')"
        ),
        {"id": run_id, "error": error[:2000]},
    )


def stale_runs(session: Session, older_than_seconds: float, limit: int = 100) -> list[str]:
    """Runs asked for or started that long ago and not finished: their message was lost or
    their process died (a live run holds its day's lock, so running one again is safe)."""
    rows = session.execute(
        text(
            "SELECT id FROM recon_runs WHERE status IN ('QUEUED', 'RUNNING')"
            " AND coalesce(started_at, created_at) < now() - make_interval(secs => :age)"
            " ORDER BY created_at LIMIT :limit"
        ),
        {"age": older_than_seconds, "limit": limit},
    )
    return [row[0] for row in rows]


def unfinished_run(session: Session, psp_id: str, day: date) -> str | None:
    """A run of this day asked for or running, if there is one."""
    return session.execute(
        text(
            "SELECT id FROM recon_runs WHERE psp_id = :psp AND day = :day"
            " AND status IN ('QUEUED', 'RUNNING') ORDER BY created_at LIMIT 1"
        ),
        {"psp": psp_id, "day": day},
    ).scalar()
