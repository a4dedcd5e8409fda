"""Test and demo controls: fault injection, account registration, decisions, listings.

None of these exist at a real PSP; they are under ``/_control`` and ``/_payments`` so they
cannot be mistaken for the simulated APIs.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from sandbox import paymaxis, sticpay
from sandbox.common import context, json_response, parse_amount
from sandbox.money import valid_currency
from sandbox.state import Fail

router = APIRouter(tags=["control"])


class ControlUpdate(BaseModel):
    """A partial update of the fault settings: omitted fields keep their value."""

    delay_ms: int | None = Field(default=None, ge=0, le=600_000)
    fail: Fail | None = None
    webhook_delay_ms: int | None = Field(default=None, ge=0, le=600_000)
    merchant_fail: bool | None = None
    # With psp, delay_ms applies to that PSP's API only (0 removes it); the others keep theirs.
    psp: Literal["paymaxis", "sticpay"] | None = None


class Account(BaseModel):
    """A Paymaxis account (apiKey [+ webhookSigningKey]) or a Sticpay merchant."""

    apiKey: str = Field(min_length=1)
    webhookSigningKey: str | None = None
    merchantEmail: str | None = None


class Decision(BaseModel):
    decision: Literal["approve", "decline"]
    # An approval the PSP records for another amount or currency than it was asked for:
    # what a partial payment or a customer editing the amount on the page looks like.
    amount: Decimal | None = None
    currency: str | None = Field(default=None, min_length=3, max_length=3)


@router.get("/_health")
async def health() -> Response:
    return json_response({"status": "ok"})


@router.get("/_control")
async def get_control(request: Request) -> Response:
    return json_response(context(request).store.control.as_dict())


@router.put("/_control")
async def put_control(update: ControlUpdate, request: Request) -> Response:
    store = context(request).store
    changes = update.model_dump(exclude_none=True)
    psp = changes.pop("psp", None)
    with store.lock:
        if psp is not None and "delay_ms" in changes:
            delay_ms = changes.pop("delay_ms")
            if delay_ms:
                store.control.psp_delay_ms[psp] = delay_ms
            else:
                store.control.psp_delay_ms.pop(psp, None)
        for name, value in changes.items():
            setattr(store.control, name, value)
        return json_response(store.control.as_dict())


@router.post("/_control/reset")
async def reset(request: Request) -> Response:
    """Forget payments, notifications, faults and settlement controls; registered accounts
    stay."""
    store = context(request).store
    store.reset()
    context(request).ledger.reset()
    return json_response(store.control.as_dict())


@router.put("/_control/accounts")
async def put_account(account: Account, request: Request) -> Response:
    store = context(request).store
    with store.lock:
        if account.merchantEmail:
            store.sticpay_keys[account.merchantEmail] = account.apiKey
            return json_response({"psp": "sticpay", "merchantEmail": account.merchantEmail})
        store.paymaxis_signing_keys[account.apiKey] = account.webhookSigningKey
    return json_response(
        {"psp": "paymaxis", "webhookSigningKey": account.webhookSigningKey is not None}
    )


@router.post("/_control/complete/{payment_id}")
async def complete(payment_id: str, decision: Decision, request: Request) -> Response:
    """What the hosted page's buttons do, answered as JSON."""
    sandbox = context(request)
    payment = sandbox.store.payments.get(payment_id)
    if payment is None:
        return json_response({"message": f"no payment {payment_id}"}, 404)
    currency = decision.currency or payment.currency
    amount = None
    if decision.amount is not None:
        amount = parse_amount(decision.amount, currency) if valid_currency(currency) else None
        if amount is None:
            return json_response({"message": f"amount must be a positive {currency} amount"}, 400)
    elif decision.currency is not None and not valid_currency(currency):
        return json_response({"message": "currency must be an ISO 4217 code"}, 400)
    psp = paymaxis if payment.psp == "paymaxis" else sticpay
    approve = decision.decision == "approve"
    recorded = (amount, decision.currency) if approve else (None, None)
    changed = psp.complete(sandbox, payment, approve, *recorded)
    return json_response({"changed": changed, "payment": payment.summary()})


@router.get("/_payments")
async def list_payments(request: Request, referenceId: str | None = None) -> Response:
    store = context(request).store
    with store.lock:
        payments = [
            p.summary()
            for p in store.payments.values()
            if referenceId is None or p.reference_id == referenceId
        ]
    return json_response({"payments": payments})
