"""Asking for a reconciliation run: the checks an API request gets before it is queued."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from api_gateway import idempotency
from api_gateway.auth import Tenant
from api_gateway.errors import BadRequest, NotFound, field_error
from storage.recon import runs
from storage.recon.vocabulary import Trigger

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


def queue_run(session: Session, tenant: Tenant, psp_id: str, day: date) -> runs.Run:
    """A QUEUED run of the tenant's PSP account for ``day``, its message leaving at commit
    for the reconcile lane; 404 for another tenant's account, 400 for a day or PSP that
    has no report."""
    try:
        psp = runs.reportable_psp(session, (tenant.brand_id, tenant.environment_id), psp_id, day)
    except runs.NoReport as refused:
        raise BadRequest("Validation failed", [field_error(refused.field, str(refused))]) from None
    if psp is None:
        raise NotFound("PSP not found")
    run = runs.create_run(session, psp, day, Trigger.API, "api")
    idempotency.link_resource(session, run.id)
    return run
