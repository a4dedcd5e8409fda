"""Step 3's request body, and the answers about transactions.

Amounts are parsed as Decimal straight from the JSON text."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, WithJsonSchema, field_validator

from api_gateway.openapi import ResponseModel, Stamp
from state_machine import Review as ReviewReason
from state_machine import Source, Status


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
        "the same PSP, in the currency it captured; the refunds of one deposit never add up to "
        "more than it captured (`capturedAmount`).",
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


# Answers. Each is written by one shaping function (storage/transaction_view.py for the
# transaction and what hangs off it, api_gateway/transactions/answers.py for Step 3) and
# checked against these models by the test suite (tests/support/contract.py).

Amount = Annotated[
    Decimal,
    WithJsonSchema(
        {
            "type": "number",
            "description": "A JSON number with the currency's decimal places (`200.00`), "
            "written digit for digit from the stored Decimal",
            "examples": [200.00],
        }
    ),
]


class Navigation(ResponseModel):
    type: str = Field(examples=["redirect"])
    contentType: str = Field(examples=["url"])
    value: str = Field(description="Where the customer's browser goes next")


class TransactionError(ResponseModel):
    code: str = Field(description="What ended it, e.g. PG_REJECTED, EXPIRED", examples=["FAILED"])
    message: str


class TransactionReview(ResponseModel):
    """Why the transaction was held for an operator, and the operator's decision."""

    reason: ReviewReason
    pspAmount: str | None = Field(description="The amount the PSP reported, as a string")
    pspCurrency: str | None
    pspState: str | None
    source: str | None = Field(description="What brought the PSP's word: webhook, inquiry, ...")
    openedAt: Stamp | None
    resolvedAt: Stamp | None
    resolution: Literal["SUCCESS", "FAILED"] | None
    note: str | None = Field(description="Why the operator decided as they did")
    resolvedBy: str | None = Field(
        description="Who decided: the operator's name (console, `connxt txn resolve "
        "--operator`) or the OS user who ran `connxt txn resolve`"
    )


class Transaction(ResponseModel):
    """A transaction as `GET /transactions/{txnId}` and merchant notifications show it."""

    txnId: str
    status: Status
    pspId: str
    pspTxnId: str | None = Field(description="The PSP's own id, once it gave one")
    flowActionId: str
    flowTargetId: str
    transactionType: str | None
    txnAmount: Amount = Field(description="The amount asked for")
    txnCurrency: str = Field(examples=["USD"])
    capturedAmount: Amount | None = Field(
        description="The money that moved: `txnAmount` on a plain SUCCESS; on a review "
        "resolved SUCCESS, what the PSP stated it took (or, where it stated none, what the "
        "operator recorded), never the amount asked. Refunds are bounded by it. Null while "
        "nothing moved."
    )
    capturedCurrency: str | None = Field(
        description="The currency of `capturedAmount`", examples=["USD"]
    )
    parentTxnId: str | None = Field(description="A refund's deposit")
    orderId: str | None
    userId: str | None
    navigation: Navigation | None
    error: TransactionError | None
    createdAt: Stamp
    updatedAt: Stamp
    review: TransactionReview | None


class TransactionPage(ResponseModel):
    items: list[Transaction]
    nextCursor: str | None = Field(description="The next page's `cursor`; null on the last page")


class TransactionEvent(ResponseModel):
    """One step of the transaction's status history."""

    fromStatus: Status | None
    toStatus: Status
    source: Source
    reason: str | None
    createdAt: Stamp


class TransactionEvents(ResponseModel):
    items: list[TransactionEvent]


class Webhook(ResponseModel):
    """A PSP notification stored for the transaction."""

    id: int
    eventKey: str = Field(description="The PSP's identity of the notification (deduplication)")
    verified: bool = Field(description="Its signature verified; unverified ones are only hints")
    attempts: int
    result: str | None = Field(description="What applying it did")
    receivedAt: Stamp
    processedAt: Stamp | None
    parkedAt: Stamp | None = Field(description="Set when it was parked after its attempts")


class Webhooks(ResponseModel):
    items: list[Webhook]


class Exchange(ResponseModel):
    """One HTTP round trip with the PSP, its secrets redacted."""

    method: str
    url: str
    request: Any
    statusCode: int | None
    response: Any
    elapsedMs: float
    error: str | None


class PspLogs(ResponseModel):
    pspState: str | None = Field(description="The PSP's own word for the payment")
    status: Status


class PspHttp(ResponseModel):
    exchanges: list[Exchange]


class PspMeta(ResponseModel):
    logs: PspLogs
    http: PspHttp


class CheckoutPage(ResponseModel):
    navigation: Navigation
    status: Literal["success"]
    orderId: str = Field(description="The merchant's order id (its `order.id`)")
    userId: str | None


class Step3Checkout(ResponseModel):
    # `__type` is the reference's name; Python hides names with leading underscores.
    kind: Literal["success"] = Field(alias="__type")
    data: CheckoutPage


class Step3Redirect(ResponseModel):
    """The PSP accepted: the customer goes to `data.data.navigation.value`."""

    txnId: str
    status: Status
    success: Literal[True]
    data: Step3Checkout
    error: None
    meta: PspMeta


class Step3Refused(ResponseModel):
    """The PSP refused the payment."""

    txnId: str
    status: Status
    pspTxnId: str | None
    success: Literal[False]
    data: None
    error: TransactionError
    meta: PspMeta


class Step3Direct(Transaction):
    """Decided without a page for the customer (a withdrawal): the transaction itself."""

    success: bool
    meta: PspMeta


class Accepted(ResponseModel):
    txnId: str
    status: Status = Field(description="Where the transaction stands now, e.g. CREATED")
