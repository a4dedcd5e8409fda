"""Controls over the settlement reports (sandbox.settlements): falsify them, add what a PSP
books on its own (chargebacks, fee adjustments), or make up a large report for benchmarks.

- ``POST /_control/settlements/inject`` ``{"kind": K, "paymentId": P}``: ``amount`` (the line
  settles 1.00 less), ``drop`` (no line), ``duplicate`` (settled twice), ``delay`` (settles a
  day later); ``{"kind": "unknown"}``: a line for a payment nobody made, on the account of
  the latest payment unless ``psp`` and ``account`` say which (``amount``, ``currency``
  optional); ``{"kind": "malformed" | "truncated"}``: every report is served with an
  unreadable amount, or cut short, until the next reset.
- ``POST /_control/settlements/adjustments`` ``{"kind": "chargeback" | "fee_adjustment",
  "paymentId"?, "amount"?, "currency"?, "psp"?, "account"?}``: booked now.
- ``POST /_control/settlements/synthetic`` ``{"psp", "account", "date", "lines", "seed",
  "currency", "referencePrefix"}``: that day's report of that account is made up from the
  seed (sandbox.settlements.Synthetic), line by line as it is read.
"""

from __future__ import annotations

import secrets
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from sandbox.common import context, json_response, parse_amount
from sandbox.money import valid_currency
from sandbox.settlements import Adjustment, Synthetic, minor
from sandbox.state import Payment

router = APIRouter(tags=["control"])


class Injection(BaseModel):
    kind: Literal["amount", "drop", "duplicate", "delay", "unknown", "malformed", "truncated"]
    paymentId: str | None = None
    psp: Literal["paymaxis", "sticpay"] | None = None
    account: str | None = None  # the Paymaxis API key or the Sticpay merchant email
    amount: Decimal | None = None
    currency: str | None = None


class AdjustmentRequest(BaseModel):
    kind: Literal["chargeback", "fee_adjustment"]
    paymentId: str | None = None
    psp: Literal["paymaxis", "sticpay"] | None = None
    account: str | None = None
    amount: Decimal | None = None
    currency: str | None = None


class SyntheticRequest(BaseModel):
    psp: Literal["paymaxis", "sticpay"]
    account: str = Field(min_length=1)
    date: date
    lines: int = Field(ge=0, le=20_000_000)
    seed: int = 1
    currency: str = "USD"
    referencePrefix: str = Field(default="txn_s", min_length=1, max_length=30)


def _message(text: str, status: int) -> Response:
    return json_response({"message": text}, status)


def _latest(request: Request) -> Payment | None:
    store = context(request).store
    with store.lock:
        payments = sorted(store.payments.values(), key=lambda p: p.created_at)
    return payments[-1] if payments else None


def _account(
    request: Request, payment: Payment | None, psp: str | None, account: str | None
) -> tuple[str, str] | None:
    """(psp, owner) named by the request, else the payment's, else the latest payment's."""
    if psp and account:
        return psp, account
    source = payment or _latest(request)
    return None if source is None else (source.psp, source.owner)


def _money(value: Decimal | None, currency: str) -> int | None:
    amount = parse_amount(value, currency) if value is not None else None
    return None if amount is None else minor(amount, currency)


@router.post("/_control/settlements/inject")
async def inject(body: Injection, request: Request) -> Response:
    sandbox = context(request)
    ledger = sandbox.ledger
    if body.kind in ("malformed", "truncated"):
        ledger.broken = body.kind
        return json_response({"broken": body.kind})
    if body.kind != "unknown":
        payment = sandbox.store.payments.get(body.paymentId or "")
        if payment is None:
            return _message(f"no payment {body.paymentId}", 404)
        ledger.inject(payment.id, body.kind)
        return json_response({"paymentId": payment.id, "kind": body.kind})
    if body.paymentId:
        return _message("an unknown payment is one nobody made: give no paymentId", 400)
    account = _account(request, None, body.psp, body.account)
    if account is None:
        return _message("no payment yet: say which psp and account", 400)
    latest = _latest(request)
    currency = body.currency or (latest.currency if latest else "USD")
    if not valid_currency(currency):
        return _message("currency must be an ISO 4217 code", 400)
    amount = _money(body.amount or Decimal("10"), currency)
    if amount is None:
        return _message(f"amount must be a positive {currency} amount", 400)
    prefix = "pmx" if account[0] == "paymaxis" else "stp"
    adjustment = Adjustment(
        psp=account[0],
        owner=account[1],
        kind="PAYMENT",
        amount=amount,
        currency=currency,
        payment_id=f"{prefix}_unknown_{secrets.token_hex(8)}",
        reference=f"ref_unknown_{secrets.token_hex(6)}",
        settled_at=datetime.now(UTC),
    )
    ledger.add(adjustment)
    return json_response({"kind": "unknown", "paymentId": adjustment.payment_id})


@router.post("/_control/settlements/adjustments")
async def adjust(body: AdjustmentRequest, request: Request) -> Response:
    sandbox = context(request)
    payment = sandbox.store.payments.get(body.paymentId) if body.paymentId else None
    if body.paymentId and payment is None:
        return _message(f"no payment {body.paymentId}", 404)
    if body.kind == "chargeback" and payment is None:
        return _message("a chargeback disputes a payment: give its paymentId", 400)
    account = _account(request, payment, body.psp, body.account)
    if account is None:
        return _message("no payment yet: say which psp and account", 400)
    currency = body.currency or (payment.currency if payment else "USD")
    if not valid_currency(currency):
        return _message("currency must be an ISO 4217 code", 400)
    default = payment.amount if payment is not None and body.kind == "chargeback" else None
    amount = _money(body.amount or default, currency)
    if amount is None:
        return _message(f"amount must be a positive {currency} amount", 400)
    adjustment = Adjustment(
        psp=account[0],
        owner=account[1],
        kind="CHARGEBACK" if body.kind == "chargeback" else "FEE_ADJUSTMENT",
        amount=amount,
        currency=currency,
        payment_id=payment.id if payment else None,
        reference=payment.reference_id if payment else None,
        settled_at=datetime.now(UTC),
    )
    sandbox.ledger.add(adjustment)
    return json_response({"kind": body.kind, "lineId": adjustment.line_id})


@router.post("/_control/settlements/synthetic")
async def synthetic(body: SyntheticRequest, request: Request) -> Response:
    if not valid_currency(body.currency):
        return _message("currency must be an ISO 4217 code", 400)
    spec = Synthetic(
        body.psp,
        body.account,
        body.date,
        body.lines,
        body.seed,
        body.currency,
        body.referencePrefix,
    )
    ledger = context(request).ledger
    with ledger.lock:
        ledger.synthetic[(spec.psp, spec.owner, spec.day)] = spec
    return json_response({"psp": spec.psp, "date": str(spec.day), "lines": spec.lines})
