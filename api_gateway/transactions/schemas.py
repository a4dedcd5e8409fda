"""Step 3 request body. Amounts are parsed as Decimal straight from the JSON text."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator


class TransactionCreate(BaseModel):
    # brandId/environmentId are accepted and ignored: the token decides the tenant.
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)
    flowActionId: StrictStr = Field(min_length=1, max_length=40)
    flowTargetId: StrictStr = Field(min_length=1, max_length=40)
    pspId: StrictStr = Field(min_length=1, max_length=40)
    transactionType: StrictStr | None = Field(default=None, max_length=40)
    txnCurrency: StrictStr = Field(min_length=3, max_length=3)
    txnAmount: Decimal = Field(description="Positive amount, at most the currency's places")
    executePayload: dict[str, Any]
    parentTxnId: StrictStr | None = Field(
        default=None,
        max_length=40,
        description="For a refund (REFUND): the successful deposit it refunds, made through "
        "the same PSP; the refunds of one deposit never add up to more than it.",
        examples=["txn_gQzyS9RkkknYWFvgnJQj3zSNjP"],
    )
    brandId: StrictStr | None = None
    environmentId: StrictStr | None = None

    @field_validator("txnAmount", mode="before")
    @classmethod
    def _no_float_or_bool(cls, value: Any) -> Any:
        # The body is parsed with Decimal for non-integers, so a float here can only come
        # from a caller bypassing that parser; refuse rather than round.
        if isinstance(value, bool | float):
            raise ValueError("must be a decimal number")
        if isinstance(value, str) and not value.strip():
            raise ValueError("must be a decimal number")
        return value

    @field_validator("txnAmount")
    @classmethod
    def _positive_finite(cls, value: Decimal) -> Decimal:
        if not value.is_finite() or value <= 0:
            raise ValueError("must be a positive amount")
        if value.adjusted() > 15:
            raise ValueError("is too large")
        return value
