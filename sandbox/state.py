"""The sandbox's memory: payments, registered accounts, fault settings, received notices.

Handlers are coroutines on one event loop, but the app may also be driven from other
threads (tests, a threaded server), so every read-modify-write happens under one lock and
never spans an ``await``.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

Fail = Literal["none", "timeout", "5xx", "decline"]

# What "fail=timeout" waits before its 504 when no delay_ms is set: longer than any sane
# client read timeout, so the client gives up first.
DEFAULT_TIMEOUT_MS = 20_000


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


@dataclass
class Control:
    """Faults applied to later API calls (never to the hosted pages or /_control)."""

    delay_ms: int = 0
    fail: Fail = "none"
    webhook_delay_ms: int = 0
    merchant_fail: bool = False  # the merchant receiver answers 503
    # Per-PSP answer times ("sticpay" → ms), over delay_ms: one slow PSP beside a fast one.
    psp_delay_ms: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        shown = asdict(self)
        if not self.psp_delay_ms:
            del shown["psp_delay_ms"]  # shown only when set
        return shown

    def delay_for(self, psp: str | None) -> int:
        return self.psp_delay_ms.get(psp or "", self.delay_ms)


@dataclass
class Payment:
    """One payment at either PSP; ``state`` is in that PSP's own words."""

    id: str
    psp: Literal["paymaxis", "sticpay"]
    owner: str  # Paymaxis: the API key; Sticpay: the merchant email
    reference_id: str
    payment_type: str  # DEPOSIT | WITHDRAWAL | REFUND
    state: str
    amount: Decimal
    currency: str
    return_url: str | None = None
    fail_url: str | None = None
    webhook_url: str | None = None
    parent_id: str | None = None
    refunded: Decimal = Decimal(0)
    error_code: str | None = None
    description: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # echoed PSP-specific fields
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)
    # Times the merchant asked the API where this payment stands (shown to tests, which
    # check that inquiries stay bounded).
    status_reads: int = 0

    def summary(self) -> dict[str, Any]:
        """The PSP-neutral view of ``GET /_payments``."""
        return {
            "id": self.id,
            "psp": self.psp,
            "referenceId": self.reference_id,
            "state": self.state,
            "amount": self.amount,
            "currency": self.currency,
            "paymentType": self.payment_type,
            "parentPaymentId": self.parent_id,
            "refunded": self.refunded,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "statusReads": self.status_reads,
        }


class Store:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.payments: dict[str, Payment] = {}
        self.idempotency: dict[tuple[str, str], str] = {}  # (owner, key) → payment id
        self.control = Control()
        # Registrations survive a reset: they are configuration, not data.
        self.paymaxis_signing_keys: dict[str, str | None] = {}  # apiKey → signing key
        self.sticpay_keys: dict[str, str] = {}  # merchantEmail → apiKey
        self.merchant_secret: str | None = None
        self.notifications: list[dict[str, Any]] = []

    def reset(self) -> None:
        with self.lock:
            self.payments.clear()
            self.idempotency.clear()
            self.notifications.clear()
            self.control = Control()

    def add(self, payment: Payment) -> None:
        """Store a new payment; call with the lock held."""
        self.payments[payment.id] = payment

    def find(self, psp: str, owner: str, reference_id: str) -> list[Payment]:
        return [
            p
            for p in self.payments.values()
            if p.psp == psp and p.owner == owner and p.reference_id == reference_id
        ]

    def owned(self, psp: str, owner: str, payment_id: str) -> Payment | None:
        payment = self.payments.get(payment_id)
        if payment is None or payment.psp != psp or payment.owner != owner:
            return None
        return payment

    def set_state(self, payment: Payment, state: str) -> None:
        payment.state = state
        payment.updated_at = now_iso()

    def record_paid(self, payment: Payment, amount: Decimal | None, currency: str | None) -> None:
        """The money the customer actually paid, when it is not what was asked for."""
        if amount is not None:
            payment.amount = amount
        if currency is not None:
            payment.currency = currency

    def refundable(self, parent: Payment) -> Decimal:
        return parent.amount - parent.refunded
