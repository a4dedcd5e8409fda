"""The Paymaxis side: the ``/api/v1/payments`` API, the hosted checkout, signed webhooks.

Wire format as the official ``paymaxis`` client expects it: answers are
``{"status", "timestamp", "result"}``, errors ``{"status", "timestamp", "error", "message"}``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from sandbox.common import (
    Sandbox,
    api_fault,
    base_url,
    context,
    json_response,
    page,
    parse_amount,
    read_fields,
    read_json,
)
from sandbox.money import dumps, money, valid_currency
from sandbox.signing import paymaxis_webhook_signature
from sandbox.state import Payment, new_id, now_iso

log = structlog.get_logger()

router = APIRouter(prefix="/paymaxis", tags=["paymaxis"])

PAYMENT_TYPES = ("DEPOSIT", "WITHDRAWAL", "REFUND")
OPEN_STATES = ("CHECKOUT", "PENDING")
TERMINAL_STATES = ("COMPLETED", "DECLINED", "CANCELLED")
_FIELDS = ("customer", "billingAddress", "paymentMethod", "returnUrl", "webhookUrl")


def view(payment: Payment) -> dict[str, Any]:
    """The payment object of answers and webhooks (``types/payment.py``'s ``Result``)."""
    body: dict[str, Any] = {
        "id": payment.id,
        "referenceId": payment.reference_id,
        "paymentType": payment.payment_type,
        "state": payment.state,
        "amount": money(payment.amount, payment.currency),
        "currency": payment.currency,
        "description": payment.description,
        "parentPaymentId": payment.parent_id,
        "errorCode": payment.error_code,
        "redirectUrl": payment.extra.get("redirectUrl"),
        "customer": payment.extra.get("customer"),
        "billingAddress": payment.extra.get("billingAddress"),
        "paymentMethod": payment.extra.get("paymentMethod"),
        "terminalName": "sandbox",
        "createdAt": payment.created_at,
        "updatedAt": payment.updated_at,
    }
    return {k: v for k, v in body.items() if v is not None}


def _error(status: int, message: str, code: str | None = None) -> Response:
    error = code or {
        400: "Bad Request",
        401: "Unauthorized",
        404: "Not Found",
        503: "Service Unavailable",
        504: "Gateway Timeout",
    }.get(status, "Error")
    return json_response(
        {"status": status, "timestamp": now_iso(), "error": error, "message": message}, status
    )


def _ok(result: Any, **extra: Any) -> Response:
    return json_response({"status": 200, "timestamp": now_iso(), **extra, "result": result})


def _api_key(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def _guard(request: Request) -> tuple[str | None, Response | None]:
    """Authenticate, then apply the fault settings; a Response means answer it."""
    api_key = _api_key(request)
    if api_key is None:
        return None, _error(401, "a Bearer API key is required")
    status = await api_fault(context(request).store, "paymaxis")
    if status is not None:
        return None, _error(status, "sandbox fault injection")
    return api_key, None


def notify(sandbox: Sandbox, payment: Payment) -> None:
    """Send the payment as a webhook signed with the account's signing key."""
    store = sandbox.store
    body = dumps(view(payment))
    # Without a registered signing key the sandbox signs with the API key itself.
    key = store.paymaxis_signing_keys.get(payment.owner) or payment.owner
    sandbox.deliverer.send(
        payment.webhook_url,
        body,
        {"Content-Type": "application/json", "Signature": paymaxis_webhook_signature(body, key)},
        psp="paymaxis",
        payment_id=payment.id,
        state=payment.state,
    )


def complete(
    sandbox: Sandbox,
    payment: Payment,
    approve: bool,
    amount: Decimal | None = None,
    currency: str | None = None,
) -> bool:
    """The customer's decision on the checkout page; False when already decided (or
    cancelled). ``amount``/``currency``: what was paid, when not what was asked for."""
    with sandbox.store.lock:
        if payment.state not in OPEN_STATES:
            return False
        sandbox.store.set_state(payment, "COMPLETED" if approve else "DECLINED")
        if approve:
            sandbox.store.record_paid(payment, amount, currency)
        else:
            payment.error_code = "DECLINED_BY_CUSTOMER"
    log.info("sandbox.paymaxis.completed", payment_id=payment.id, state=payment.state)
    notify(sandbox, payment)
    return True


@router.post("/api/v1/payments")
async def create_payment(request: Request) -> Response:
    api_key, refused = await _guard(request)
    if refused is not None:
        return refused
    assert api_key is not None
    sandbox = context(request)
    store = sandbox.store
    data = await read_json(request)
    if not isinstance(data, dict):
        return _error(400, "the body must be a JSON object")
    payment_type, currency = data.get("paymentType"), data.get("currency")
    if payment_type not in PAYMENT_TYPES:
        return _error(400, f"paymentType must be one of {', '.join(PAYMENT_TYPES)}")
    if not valid_currency(currency):
        return _error(400, "currency must be an ISO 4217 code")
    reference_id = data.get("referenceId")
    if reference_id is not None and not isinstance(reference_id, str):
        return _error(400, "referenceId must be a string")
    amount = None
    if data.get("amount") is not None or payment_type != "REFUND":
        amount = parse_amount(data.get("amount"), currency)
        if amount is None:
            return _error(400, f"amount must be positive with at most the places of {currency}")

    idempotency_key = request.headers.get("idempotency-key")
    declined = store.control.fail == "decline"
    with store.lock:
        # Same key, same payment: the answer a retried create must get.
        existing = store.idempotency.get((api_key, idempotency_key)) if idempotency_key else None
        if existing is not None:
            return _ok(view(store.payments[existing]))
        parent = None
        if payment_type == "REFUND":
            parent = store.owned("paymaxis", api_key, str(data.get("parentPaymentId") or ""))
            if parent is None or parent.payment_type != "DEPOSIT":
                return _error(400, "parentPaymentId must name a deposit", "INVALID_PARENT")
            if parent.state != "COMPLETED":
                return _error(400, "only a completed deposit can be refunded", "NOT_REFUNDABLE")
            if currency != parent.currency:
                return _error(400, "a refund is in its deposit's currency", "INVALID_CURRENCY")
            amount = amount if amount is not None else store.refundable(parent)
            if amount > store.refundable(parent):
                return _error(
                    400,
                    f"amount exceeds the refundable {money(store.refundable(parent), currency)}",
                    "AMOUNT_EXCEEDS_REFUNDABLE",
                )
        assert amount is not None
        payment = Payment(
            id=new_id("pmx"),
            psp="paymaxis",
            owner=api_key,
            reference_id=reference_id or "",
            payment_type=payment_type,
            state="PENDING",
            amount=amount,
            currency=currency,
            return_url=data.get("returnUrl"),
            webhook_url=data.get("webhookUrl"),
            parent_id=parent.id if parent else None,
            description=data.get("description")
            if isinstance(data.get("description"), str)
            else None,
            extra={k: data[k] for k in _FIELDS if k in data},
        )
        if declined:
            payment.state, payment.error_code = "DECLINED", "DECLINED_BY_SANDBOX"
        elif payment_type == "DEPOSIT":
            payment.state = "CHECKOUT"
            payment.extra["redirectUrl"] = f"{base_url(request)}/paymaxis/checkout/{payment.id}"
        else:
            # Withdrawals and refunds need no customer: they complete at once.
            payment.state = "COMPLETED"
            if parent is not None:
                parent.refunded += amount
        store.add(payment)
        if idempotency_key:
            store.idempotency[(api_key, idempotency_key)] = payment.id
    log.info(
        "sandbox.paymaxis.created",
        payment_id=payment.id,
        reference_id=reference_id,
        payment_type=payment_type,
        state=payment.state,
    )
    if payment.state in TERMINAL_STATES:
        notify(sandbox, payment)
    return _ok(view(payment))


@router.get("/api/v1/payments/{payment_id}")
async def get_payment(payment_id: str, request: Request) -> Response:
    api_key, refused = await _guard(request)
    if refused is not None:
        return refused
    store = context(request).store
    payment = store.owned("paymaxis", str(api_key), payment_id)
    if payment is None:
        return _error(404, f"payment {payment_id} not found")
    with store.lock:
        payment.status_reads += 1
    return _ok(view(payment))


@router.post("/api/v1/payments/{payment_id}/cancel")
async def cancel_payment(payment_id: str, request: Request) -> Response:
    """Close an open payment: its checkout page can no longer be paid. Cancelling a
    cancelled payment answers it again; a decided one is a 409 naming its state."""
    api_key, refused = await _guard(request)
    if refused is not None:
        return refused
    sandbox = context(request)
    payment = sandbox.store.owned("paymaxis", str(api_key), payment_id)
    if payment is None:
        return _error(404, f"payment {payment_id} not found")
    with sandbox.store.lock:
        state = payment.state
        if state in OPEN_STATES:
            sandbox.store.set_state(payment, "CANCELLED")
            payment.error_code = "CANCELLED_BY_MERCHANT"
    if state == "CANCELLED":
        return _ok(view(payment))
    if state not in OPEN_STATES:
        return _error(409, f"payment {payment_id} is {state}", "NOT_CANCELLABLE")
    log.info("sandbox.paymaxis.cancelled", payment_id=payment.id)
    notify(sandbox, payment)
    return _ok(view(payment))


@router.get("/api/v1/payments")
async def list_payments(
    request: Request, referenceId: str | None = None, limit: int = 50, offset: int = 0
) -> Response:
    api_key, refused = await _guard(request)
    if refused is not None:
        return refused
    store = context(request).store
    with store.lock:
        payments = [
            p
            for p in store.payments.values()
            if p.psp == "paymaxis"
            and p.owner == api_key
            and (referenceId is None or p.reference_id == referenceId)
        ]
        for payment in payments if referenceId is not None else ():
            payment.status_reads += 1
    page_items = payments[max(offset, 0) : max(offset, 0) + max(min(limit, 1000), 1)]
    return _ok([view(p) for p in page_items], hasMore=len(payments) > offset + len(page_items))


@router.get("/checkout/{payment_id}", include_in_schema=False)
async def checkout_page(payment_id: str, request: Request) -> Response:
    payment = context(request).store.payments.get(payment_id)
    if payment is None or payment.psp != "paymaxis":
        return page("Payment not found", {"Payment": payment_id}, None, 404)
    rows = {
        "Amount": money(payment.amount, payment.currency),
        "Currency": payment.currency,
        "Reference": payment.reference_id,
        "State": payment.state,
    }
    action = f"{base_url(request)}/paymaxis/checkout/{payment.id}"
    open_ = payment.state in OPEN_STATES
    return page("Paymaxis checkout (sandbox)", rows, action if open_ else None)


@router.post("/checkout/{payment_id}", include_in_schema=False)
async def checkout_decision(payment_id: str, request: Request) -> Response:
    sandbox = context(request)
    payment = sandbox.store.payments.get(payment_id)
    if payment is None or payment.psp != "paymaxis":
        return page("Payment not found", {"Payment": payment_id}, None, 404)
    decision = (await read_fields(request)).get("decision")
    if decision not in ("approve", "decline"):
        return page("Choose Approve or Decline", {"Payment": payment_id}, None, 400)
    complete(sandbox, payment, decision == "approve")
    if payment.return_url:
        return RedirectResponse(payment.return_url, status_code=303)
    return page("Payment finished", {"State": payment.state}, None)
