"""Names for display: tenants as "brand / environment" and PSP accounts, by id."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import Brand, Environment, Psp
from storage.psps import list_psps


def environment_labels(session: Session, environment_ids: Iterable[str]) -> dict[str, str]:
    """``{environment id: "brand / environment"}`` for the ids given."""
    ids = sorted(set(environment_ids))
    if not ids:
        return {}
    rows = session.execute(
        select(Environment.id, Brand.name, Environment.name)
        .join(Brand, Brand.id == Environment.brand_id)
        .where(Environment.id.in_(ids))
    )
    return {env_id: f"{brand} / {env}" for env_id, brand, env in rows}


def psp_accounts(session: Session, scope: tuple[str, str] | None) -> list[Psp]:
    """The PSP accounts of one (brand, environment), or every tenant's when ``scope`` is
    None (operators)."""
    if scope is not None:
        return list_psps(session, *scope)
    return list(session.scalars(select(Psp).order_by(Psp.name, Psp.id)))
