"""Step 2 request bodies."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr

Status = Literal["ENABLED", "DISABLED"]


class OperationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    flowActionId: StrictStr = Field(min_length=1, max_length=40)
    flowDefinitionId: StrictStr = Field(min_length=1, max_length=40)
    status: Status


class PspCreate(BaseModel):
    # brandId/environmentId are accepted and ignored: the token decides the tenant.
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)
    name: StrictStr = Field(min_length=1, max_length=200)
    description: StrictStr | None = Field(default=None, max_length=2000)
    logo: StrictStr | None = Field(default=None, max_length=200_000)
    credential: StrictStr = Field(min_length=2, max_length=20_000)
    flowTargetId: StrictStr = Field(min_length=1, max_length=40)
    operations: list[OperationIn] = Field(min_length=1, max_length=10)
    brandId: StrictStr | None = None
    environmentId: StrictStr | None = None


class PspUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    name: StrictStr | None = Field(default=None, min_length=1, max_length=200)
    description: StrictStr | None = Field(default=None, max_length=2000)
    logo: StrictStr | None = Field(default=None, max_length=200_000)
    status: Status | None = None
    credential: StrictStr | None = Field(default=None, min_length=2, max_length=20_000)
    operations: list[OperationIn] | None = Field(default=None, min_length=1, max_length=10)
