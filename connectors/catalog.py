"""The PSP catalog (Step 1) as the registered connectors describe it; no database here.

`storage.catalog` writes this into the database, issuing ids once and keeping them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from connectors.base import Action, Connector

FLOW_TYPE = "PSP"


@dataclass(frozen=True)
class ActionSpec:
    name: str
    definition_description: str
    input_schema: dict[str, Any]


@dataclass(frozen=True)
class TargetSpec:
    name: str
    logo: str
    credential_schema: dict[str, Any]
    input_schema: dict[str, Any]
    currencies: list[str]
    countries: list[str]
    payment_methods: list[str]
    actions: list[ActionSpec]


def _enum_array(values: tuple[str, ...]) -> dict[str, Any]:
    return {"type": "array", "items": {"enum": list(values), "type": "string"}}


def target_spec(connector: Connector) -> TargetSpec:
    return TargetSpec(
        name=connector.name,
        logo=connector.logo,
        credential_schema=connector.credential_schema,
        input_schema={
            "paymentMethods": _enum_array(connector.payment_methods),
            "countries": _enum_array(connector.countries),
            "currencies": _enum_array(connector.currencies),
        },
        currencies=list(connector.currencies),
        countries=list(connector.countries),
        payment_methods=list(connector.payment_methods),
        actions=[
            ActionSpec(
                name=action.value,
                definition_description=f"SYS-PSP-{action.value}-{connector.name.upper()}",
                input_schema=schema,
            )
            for action, schema in connector.input_schemas.items()
            if action in Action.__members__.values()
        ],
    )
