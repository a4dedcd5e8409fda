"""The console's Reconciliation pages: runs per day with their matched share, a run's
differences linked to their transactions, and the two actions (a run of a day, a
difference resolved with a note). Read and written through storage.recon, in the viewer's
scope, as the API is."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import structlog

from console.auth import Viewer
from console.service import NotFound
from storage.db import session_scope
from storage.directory import environment_labels, psp_accounts
from storage.recon import differences, runs
from storage.recon.views import difference_view, run_view
from storage.recon.vocabulary import Trigger

log = structlog.get_logger()


class Refused(Exception):
    """The action cannot be done as asked; the message says why."""


@dataclass
class RunsPage:
    rows: list[dict[str, Any]]
    psps: list[tuple[str, str]]  # accounts whose PSP publishes reports: (id, label)
    show_tenant: bool


@dataclass
class RunPage:
    run: dict[str, Any]
    psp_name: str
    tenant: str
    differences: list[dict[str, Any]]
    adjustments: list[dict[str, Any]]


def runs_page(viewer: Viewer) -> RunsPage:
    with session_scope() as session:
        found = runs.list_runs(session, viewer.scope, limit=100)
        accounts = psp_accounts(session, viewer.scope)
        tenants = environment_labels(
            session, [r.environment_id for r in found] + [p.environment_id for p in accounts]
        )
        # The accounts are the viewer's already (psp_accounts is scoped).
        reporting = runs.reporting_psp_ids(session, [p.id for p in accounts])
    rows = [
        {
            **run_view(run),
            "psp_name": run.psp_name,
            "tenant": tenants.get(run.environment_id, run.environment_id),
            "open": sum((run.summary or {}).get("differences", {}).values()),
        }
        for run in found
    ]
    psps = [
        (p.id, f"{p.name} ({tenants.get(p.environment_id, '')})" if viewer.is_operator else p.name)
        for p in accounts
        if p.id in reporting
    ]
    return RunsPage(rows, psps, viewer.is_operator)


def run_page(viewer: Viewer, run_id: str) -> RunPage:
    with session_scope() as session:
        run = runs.get_run(session, viewer.scope, run_id)
        if run is None:
            raise NotFound("run", run_id)
        found = [difference_view(d) for d in differences.all_of_run(session, viewer.scope, run_id)]
        adjustments = differences.adjustments_of(session, viewer.scope, run_id)
        tenant = environment_labels(session, [run.environment_id]).get(run.environment_id, "")
    return RunPage(run_view(run), run.psp_name, tenant, found, adjustments)


def start_run(viewer: Viewer, psp_id: str, day_text: str) -> str:
    """Queue a run of the account's day (for the reconcile lane); its id."""
    try:
        day = date.fromisoformat(day_text)
    except ValueError:
        raise Refused("the day must be YYYY-MM-DD") from None
    with session_scope() as session:
        try:
            psp = runs.reportable_psp(session, viewer.scope, psp_id, day)
        except runs.NoReport as refused:
            raise Refused(str(refused)) from None
        if psp is None:
            raise NotFound("PSP account", psp_id)
        run = runs.create_run(session, psp, day, Trigger.CONSOLE, viewer.who)
    log.info("console.recon_run", run_id=run.id, psp_id=psp_id, day=str(day), operator=viewer.who)
    return run.id


def difference(viewer: Viewer, difference_id: int) -> dict[str, Any]:
    with session_scope() as session:
        found = differences.get(session, viewer.scope, difference_id)
    if found is None:
        raise NotFound("difference", difference_id)
    return difference_view(found)


def resolve(viewer: Viewer, difference_id: int, note: str) -> dict[str, Any]:
    note = note.strip()
    if not note:
        raise Refused("say why: the note is recorded with the resolution")
    try:
        with session_scope() as session:
            resolved = differences.resolve(session, viewer.scope, difference_id, note, viewer.who)
    except LookupError:
        raise NotFound("difference", difference_id) from None
    except differences.AlreadyResolved:
        raise Refused("it was resolved already") from None
    log.info("console.recon_resolved", difference_id=difference_id, operator=viewer.who)
    return difference_view(resolved)
