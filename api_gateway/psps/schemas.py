"""Step 2: the request bodies, and the PSP as answers show it."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictStr

from api_gateway.openapi import ResponseModel, Stamp

PspStatus = Literal[
    "ENABLED", "DISABLED"
]  # of a PSP account (a transaction's is state_machine.Status)


def _no_nul(value: str) -> str:
    # PostgreSQL text cannot hold NUL: refuse it here (400 on the field), not at the insert.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


Text = Annotated[StrictStr, AfterValidator(_no_nul)]


class OperationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    flowActionId: Text = Field(min_length=1, max_length=40)
    flowDefinitionId: Text = Field(min_length=1, max_length=40)
    status: PspStatus


class PspCreate(BaseModel):
    # brandId/environmentId are accepted and ignored: the token decides the tenant.
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)
    name: Text = Field(min_length=1, max_length=200)
    description: Text | None = Field(default=None, max_length=2000)
    logo: Text | None = Field(default=None, max_length=200_000)
    credential: Text = Field(min_length=2, max_length=20_000)
    flowTargetId: Text = Field(min_length=1, max_length=40)
    operations: list[OperationIn] = Field(min_length=1, max_length=10)
    brandId: Text | None = None
    environmentId: Text | None = None


class PspUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    name: Text | None = Field(default=None, min_length=1, max_length=200)
    description: Text | None = Field(default=None, max_length=2000)
    logo: Text | None = Field(default=None, max_length=200_000)
    status: PspStatus | None = None
    credential: Text | None = Field(default=None, min_length=2, max_length=20_000)
    operations: list[OperationIn] | None = Field(default=None, min_length=1, max_length=10)


# The answer, written by api_gateway.psps.service.present.


class Operation(ResponseModel):
    flowActionId: str
    flowDefinitionId: str
    status: PspStatus


class SupportedAction(ResponseModel):
    flowActionId: str
    flowDefinitionId: str | None
    flowActionName: str = Field(examples=["DEPOSIT"])


class PspFlowTarget(ResponseModel):
    id: str
    credentialSchema: str = Field(
        description="The target's credential JSON schema, as a JSON string (the reference's form)"
    )
    flowTypeId: str
    currencies: list[str]
    countries: list[str]
    paymentMethods: list[str]
    supportedActions: list[SupportedAction]


class Psp(ResponseModel):
    """A merchant's PSP account. Its credential is never returned."""

    id: str = Field(description="Use as `pspId` in Step 3")
    name: str
    description: str | None
    logo: str | None
    credential: Literal["***ENCRYPTED***"]
    brandId: str
    environmentId: str
    flowTargetId: str
    status: PspStatus
    createdAt: Stamp
    updatedAt: Stamp
    createdBy: str | None
    updatedBy: str | None
    operations: list[Operation]
    flowTarget: PspFlowTarget


class Psps(ResponseModel):
    items: list[Psp]
