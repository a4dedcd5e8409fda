"""The answer to a PSP's webhook."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from api_gateway.openapi import ResponseModel


class WebhookReceived(ResponseModel):
    received: Literal[True]
    duplicate: bool = Field(description="The same notification was stored before")
