"""The one Protocol every PSP adapter implements, and the values that cross it.

Connectors speak HTTP to a PSP and translate its vocabulary into ours. They never touch
the database and never decide a transaction's status: they report a PSP ``Outcome`` and
the state machine decides what it means.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, NamedTuple, Protocol, runtime_checkable


class Action(enum.StrEnum):
    """The flow actions of the catalog."""

    DEPOSIT = "DEPOSIT"
    WITHDRAW = "WITHDRAW"
    REFUND = "REFUND"


class Outcome(enum.StrEnum):
    """What the PSP said about one payment, in our words."""

    ACCEPTED = "ACCEPTED"  # taken, waiting for the customer or for processing
    COMPLETED = "COMPLETED"  # money moved
    DECLINED = "DECLINED"  # explicitly refused at initiation
    FAILED = "FAILED"  # accepted earlier, ended without moving money (cancelled, expired)
    NOT_FOUND = "NOT_FOUND"  # the PSP has no payment for our reference
    UNKNOWN = "UNKNOWN"  # timeout, 5xx, transport error: ask again later


@dataclass(frozen=True)
class Navigation:
    """Where the customer's browser must go next (the reference's `navigation`)."""

    value: str
    type: str = "redirect"
    content_type: str = "url"

    def as_dict(self) -> dict[str, str]:
        return {"type": self.type, "contentType": self.content_type, "value": self.value}


@dataclass(frozen=True)
class Exchange:
    """One HTTP round trip with the PSP, secrets already redacted; shown in `data.meta`."""

    method: str
    url: str
    request_body: Any
    status_code: int | None
    response_body: Any
    elapsed_ms: float
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "url": self.url,
            "request": self.request_body,
            "statusCode": self.status_code,
            "response": self.response_body,
            "elapsedMs": round(self.elapsed_ms, 1),
            "error": self.error,
        }


@dataclass(frozen=True)
class PaymentRequest:
    """Everything a connector needs to start one payment at the PSP."""

    txn_id: str
    action: Action
    amount: Decimal
    currency: str
    payload: dict[str, Any]  # the merchant's executePayload
    return_url: str  # where the PSP sends the browser back (our redirect endpoint)
    webhook_url: str  # where the PSP posts notifications (our webhook endpoint)
    parent_psp_txn_id: str | None = None  # refunds: the PSP's id of the original deposit
    # False only on a first attempt, when no earlier call can have reached the PSP: a
    # connector may then skip looking for an existing payment before creating one.
    may_exist: bool = True


@dataclass(frozen=True)
class PspResult:
    """The PSP's answer to initiate, inquire or cancel."""

    outcome: Outcome
    psp_txn_id: str | None = None
    navigation: Navigation | None = None
    reason: str | None = None
    psp_state: str | None = None  # the PSP's own word, for the record
    exchanges: tuple[Exchange, ...] = field(default_factory=tuple)
    # The money as the PSP states it, None when it did not say: a success is settled only
    # when these equal the transaction's amount and currency.
    amount: Decimal | None = None
    currency: str | None = None


@dataclass(frozen=True)
class WebhookEvent:
    """A parsed PSP notification.

    ``identity`` is unique per distinct notification (e.g. payment id + state) and is the
    inbox's de-duplication key. ``verified`` is False when no signing key was configured
    (development only; production refuses such a body): such a notification is only a hint
    to ask the PSP, and never takes a verified one's place in the inbox.
    """

    identity: str
    txn_id: str  # our reference, as the PSP echoes it
    psp_txn_id: str | None
    outcome: Outcome
    psp_state: str
    verified: bool
    amount: Decimal | None = None
    currency: str | None = None


class ConnectorError(Exception):
    """Base of connector errors."""


class MalformedWebhook(ConnectorError):
    """The body cannot be parsed as this PSP's notification (HTTP 400)."""


class BodyNotJson(MalformedWebhook):
    """The body of a notification that should be JSON is not JSON at all: answered in the
    API's one wording for any such body."""


class InvalidSignature(ConnectorError):
    """The notification's signature does not match (HTTP 401)."""


class UnsignedRefused(InvalidSignature):
    """No signing key to verify with, where unsigned notifications are refused (production,
    an account made before the key was required): HTTP 401, as for a bad signature."""


@runtime_checkable
class Connector(Protocol):
    """A PSP adapter. One instance per process; it owns one pooled httpx client."""

    name: str  # the flow target name, e.g. "Paymaxis"
    logo: str  # URL or data: URI
    credential_schema: dict[str, Any]
    input_schemas: dict[Action, dict[str, Any]]  # per action, for executePayload
    currencies: tuple[str, ...]
    countries: tuple[str, ...]
    payment_methods: tuple[str, ...]

    def initiate(self, credential: dict[str, Any], request: PaymentRequest) -> PspResult:
        """Start the payment. Must be safe to call again for the same txn_id."""

    def inquire(self, credential: dict[str, Any], txn_id: str, psp_txn_id: str | None) -> PspResult:
        """Ask the PSP for the current state of our payment."""

    # Optional: the credential field that holds a webhook signing key the schema lets the
    # merchant leave out (``webhook_signing_field = "webhookSigningKey"``). Production
    # requires it, so that every webhook of such an account can be verified.

    def parse_webhook(
        self, credential: dict[str, Any], headers: dict[str, str], body: bytes
    ) -> WebhookEvent:
        """Verify (where a key is configured) and parse a notification.

        Raises MalformedWebhook or InvalidSignature.
        """

    def webhook_identity(self, headers: dict[str, str], body: bytes) -> str:
        """The de-duplication key of a notification, without verifying it."""


@runtime_checkable
class Cancellable(Protocol):
    """Optional part of a connector, for PSPs that can close a payment before it is paid."""

    def cancel(self, credential: dict[str, Any], txn_id: str, psp_txn_id: str) -> PspResult:
        """Ask the PSP to cancel the open payment; the answer is its state afterwards.

        FAILED: cancelled, its page can no longer be paid. COMPLETED: it was paid first.
        Anything else: the PSP would not or could not cancel it.
        """


class SettlementType(enum.StrEnum):
    """What a settlement line moved, in our words."""

    PAYMENT = "payment"  # a deposit settled to the merchant
    REFUND = "refund"  # money given back to the customer
    PAYOUT = "payout"  # a withdrawal paid out
    CHARGEBACK = "chargeback"  # a payment disputed and taken back
    FEE_ADJUSTMENT = "fee_adjustment"  # a fee booked on its own


class SettlementLine(NamedTuple):
    """One line of a PSP's settlement report, read exactly (a named tuple: a report may
    hold a million of them, and a tuple is made in a fraction of a dataclass's time).

    ``gross`` is the amount of the payment (positive); ``fee`` what the PSP kept; ``net``
    what the line did to the merchant's balance (negative for refunds, payouts,
    chargebacks and fees). ``psp_payment_id`` and ``reference`` (our transaction id, as the
    PSP echoes it) are None where the line names no payment (an account fee)."""

    psp_payment_id: str | None
    reference: str | None
    type: SettlementType
    gross: Decimal
    fee: Decimal
    net: Decimal
    currency: str
    settled_at: datetime  # aware


def settlement_net(kind: SettlementType, gross: Decimal, fee: Decimal) -> Decimal:
    """What a line does to the balance: a payment brings its gross less the fee; anything
    else takes the gross and the fee away."""
    return gross - fee if kind is SettlementType.PAYMENT else -(gross + fee)


class ReportError(ConnectorError):
    """A settlement report that could not be read whole: refused, unreachable, cut short or
    not what the PSP's format says. The message says which, without secrets."""


class ReportNotReady(ReportError):
    """The PSP has no report for that day (yet)."""


@runtime_checkable
class SettlementReports(Protocol):
    """Optional part of a connector: the PSP's settlement report of one account and day."""

    # The PSP's settlement day runs from midnight to midnight in this IANA time zone.
    settlement_zone: str

    def settlement_lines(self, credential: dict[str, Any], day: date) -> Iterator[SettlementLine]:
        """Every line of the report of the PSP's settlement day ``day``, in the PSP's order,
        streamed (pages followed, never read whole). Raises ReportError, possibly after
        some lines: a caller keeps nothing of a report that did not end."""
