"""Step 1's answer: the flow types and their targets (the PSP catalog)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from api_gateway.openapi import ResponseModel


class ActionDefinition(ResponseModel):
    id: str = Field(description="Use as `flowDefinitionId` in Step 2")
    description: str | None
    inputSchema: dict[str, Any]


class Action(ResponseModel):
    id: str = Field(description="Use as `flowActionId` in Steps 2 and 3")
    name: str = Field(examples=["DEPOSIT"])
    status: str = Field(description="ENABLED, or DISABLED by an operator")
    definition: ActionDefinition | None


class FlowTarget(ResponseModel):
    id: str = Field(description="Use as `flowTargetId` in Step 2")
    name: str = Field(examples=["Paymaxis"])
    logo: str | None
    status: str = Field(description="ENABLED, or DISABLED by an operator")
    credentialSchema: dict[str, Any] = Field(description="What Step 2's `credential` holds")
    inputSchema: dict[str, Any]
    actions: list[Action]


class FlowTypeDefinitions(ResponseModel):
    name: str = Field(examples=["PSP"])
    targets: list[FlowTarget]
