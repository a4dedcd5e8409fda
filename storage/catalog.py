"""Catalog rows: `connxt catalog sync` writes them, Step 1 and PSP validation read them.

Sync matches rows by name, so an id, once issued, never changes: merchants keep the
`ftg_`/`fat_`/`fld_` ids they stored. An operator can take a flow target, or one action of
it, out of service (`connxt catalog disable`); sync never changes that status back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from connectors.catalog import FLOW_TYPE, TargetSpec
from connxt.ids import ulid_id
from connxt.settings import get_settings
from connxt.ttl_cache import TtlCache
from storage.models import FlowAction, FlowDefinition, FlowTarget, FlowType


def sync_catalog(session: Session, specs: list[TargetSpec]) -> dict[str, int]:
    """Insert what is missing, refresh what changed; returns counts of rows created."""
    created = {"flow_types": 0, "flow_targets": 0, "flow_actions": 0, "flow_definitions": 0}
    flow_type = session.scalar(select(FlowType).where(FlowType.name == FLOW_TYPE))
    if flow_type is None:
        flow_type = FlowType(id=ulid_id("ftp"), name=FLOW_TYPE)
        session.add(flow_type)
        created["flow_types"] += 1
    for spec in specs:
        target = session.scalar(select(FlowTarget).where(FlowTarget.name == spec.name))
        if target is None:
            target = FlowTarget(id=ulid_id("ftg"), name=spec.name, status="ENABLED")
            session.add(target)
            created["flow_targets"] += 1
        target.flow_type_id = flow_type.id
        target.logo = spec.logo
        target.credential_schema = spec.credential_schema
        target.input_schema = spec.input_schema
        target.currencies = spec.currencies
        target.countries = spec.countries
        target.payment_methods = spec.payment_methods
        session.flush()
        for action_spec in spec.actions:
            action = session.scalar(
                select(FlowAction).where(
                    FlowAction.flow_target_id == target.id, FlowAction.name == action_spec.name
                )
            )
            if action is None:
                action = FlowAction(
                    id=ulid_id("fat"), flow_target_id=target.id, name=action_spec.name
                )
                session.add(action)
                session.flush()
                created["flow_actions"] += 1
            definition = session.scalar(
                select(FlowDefinition).where(FlowDefinition.flow_action_id == action.id)
            )
            if definition is None:
                definition = FlowDefinition(id=ulid_id("fld"), flow_action_id=action.id)
                session.add(definition)
                created["flow_definitions"] += 1
            definition.description = action_spec.definition_description
            definition.input_schema = action_spec.input_schema
    session.flush()
    return created


ENABLED, DISABLED = "ENABLED", "DISABLED"


@dataclass(frozen=True)
class ActionRow:
    id: str
    name: str
    definition_id: str | None
    definition_description: str | None
    input_schema: dict[str, Any] | None
    status: str = ENABLED


@dataclass(frozen=True)
class TargetRow:
    id: str
    name: str
    logo: str | None
    status: str
    flow_type_id: str
    credential_schema: dict[str, Any]
    input_schema: dict[str, Any]
    currencies: list[str]
    countries: list[str]
    payment_methods: list[str]
    actions: list[ActionRow]

    def action(self, action_id: str) -> ActionRow | None:
        return next((a for a in self.actions if a.id == action_id), None)


def _actions_by_target(session: Session, target_ids: list[str]) -> dict[str, list[ActionRow]]:
    rows = session.execute(
        select(FlowAction, FlowDefinition)
        .outerjoin(FlowDefinition, FlowDefinition.flow_action_id == FlowAction.id)
        .where(FlowAction.flow_target_id.in_(target_ids))
        .order_by(FlowAction.name.desc())
    ).all()
    out: dict[str, list[ActionRow]] = {tid: [] for tid in target_ids}
    for action, definition in rows:
        out[action.flow_target_id].append(
            ActionRow(
                id=action.id,
                name=action.name,
                definition_id=definition.id if definition else None,
                definition_description=definition.description if definition else None,
                input_schema=definition.input_schema if definition else None,
                status=action.status,
            )
        )
    return out


def _target_row(target: FlowTarget, actions: list[ActionRow]) -> TargetRow:
    return TargetRow(
        id=target.id,
        name=target.name,
        logo=target.logo,
        status=target.status,
        flow_type_id=target.flow_type_id,
        credential_schema=target.credential_schema,
        input_schema=target.input_schema,
        currencies=list(target.currencies),
        countries=list(target.countries),
        payment_methods=list(target.payment_methods),
        actions=actions,
    )


def load_flow_type(session: Session, name: str) -> tuple[FlowType, list[TargetRow]] | None:
    flow_type = session.scalar(select(FlowType).where(FlowType.name == name))
    if flow_type is None:
        return None
    targets = session.scalars(
        select(FlowTarget).where(FlowTarget.flow_type_id == flow_type.id).order_by(FlowTarget.name)
    ).all()
    actions = _actions_by_target(session, [t.id for t in targets])
    return flow_type, [_target_row(t, actions[t.id]) for t in targets]


def load_target(session: Session, target_id: str) -> TargetRow | None:
    target = session.get(FlowTarget, target_id)
    if target is None:
        return None
    return _target_row(target, _actions_by_target(session, [target.id])[target.id])


class UnknownCatalogEntry(LookupError):
    """No flow target (or no action of it) by that name."""


def status_of(session: Session, target_name: str, action_name: str | None) -> str | None:
    """A flow target's status, or one of its actions'; None when there is no such entry."""
    if action_name is None:
        return session.scalar(select(FlowTarget.status).where(FlowTarget.name == target_name))
    return session.scalar(
        select(FlowAction.status)
        .join(FlowTarget, FlowTarget.id == FlowAction.flow_target_id)
        .where(FlowTarget.name == target_name, FlowAction.name == action_name.upper())
    )


def set_status(session: Session, target_name: str, action_name: str | None, status: str) -> str:
    """Enable or disable a flow target, or one of its actions; the id of what changed."""
    target_id = session.scalar(select(FlowTarget.id).where(FlowTarget.name == target_name))
    if target_id is None:
        raise UnknownCatalogEntry(f"no flow target named {target_name!r}")
    if action_name is None:
        session.execute(update(FlowTarget).where(FlowTarget.id == target_id).values(status=status))
        return target_id
    action_id: str | None = session.scalar(
        update(FlowAction)
        .where(FlowAction.flow_target_id == target_id, FlowAction.name == action_name.upper())
        .values(status=status)
        .returning(FlowAction.id)
    )
    if action_id is None:
        raise UnknownCatalogEntry(f"{target_name} has no action named {action_name!r}")
    return action_id


# The catalog changes only on `connxt catalog sync` and `connxt catalog disable|enable`; the
# hot path may read it this stale, and no staler: the bound a disable is promised.
_targets: TtlCache[str, TargetRow] = TtlCache(get_settings().catalog_cache_seconds, max_items=1000)


def cached_target(session: Session, target_id: str) -> TargetRow | None:
    return _targets.get_or_load(target_id, lambda: load_target(session, target_id))


def peek_target(target_id: str) -> TargetRow | None:
    """The cached row while it is fresh, without touching the database; else None."""
    return _targets.get(target_id)
