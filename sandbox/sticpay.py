"""The Sticpay side: the signed hosted page, ``/api/withdraw``, ``/api/query``, callbacks.

Requests are checked with the sandbox's own ``sticpay_sign`` when the merchant's key is
registered (``PUT /_control/accounts``); unregistered merchants are trusted, so a demo
works without set-up. Callbacks are signed with the registered key.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

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
)
from sandbox.money import money_text, valid_currency
from sandbox.signing import sticpay_sign, sticpay_signature_matches
from sandbox.state import Payment, Store, new_id

log = structlog.get_logger()

router = APIRouter(prefix="/sticpay", tags=["sticpay"])

# Sticpay's answer for an order it does not know (what the connector reads as "not found").
NOT_FOUND_CODE = "ORDER_NOT_FOUND"
_PAGE_FIELDS = ("merchant_email", "order_no", "order_amount", "order_currency", "sign")
_TYPES = {"WITHDRAW": "WITHDRAWAL", "REFUND": "REFUND"}


def view(payment: Payment) -> dict[str, Any]:
    body = {
        "transaction_id": payment.id,
        "order_no": payment.reference_id,
        "status": payment.state,
        "order_amount": money_text(payment.amount, payment.currency),
        "order_currency": payment.currency,
        "type": payment.payment_type,
        "parent_transaction_id": payment.parent_id,
        "message": payment.error_code,
    }
    return {k: v for k, v in body.items() if v is not None}


def _error(status: int, code: str, message: str) -> Response:
    return json_response({"code": code, "message": message}, status)


def _signed(store: Store, fields: dict[str, str]) -> bool:
    key = store.sticpay_keys.get(fields.get("merchant_email", ""))
    return key is None or sticpay_signature_matches(fields, key)


def notify(sandbox: Sandbox, payment: Payment) -> None:
    """POST the signed callback form to the order's callback_url."""
    fields = {
        "order_no": payment.reference_id,
        "transaction_id": payment.id,
        "status": payment.state,
        "order_amount": money_text(payment.amount, payment.currency),
        "order_currency": payment.currency,
    }
    key = sandbox.store.sticpay_keys.get(payment.owner)
    if key is None:
        # Nothing to sign with: the connector will refuse it, as it should.
        log.warning("sandbox.sticpay.unregistered_merchant", merchant_email=payment.owner)
    fields["sign"] = sticpay_sign(fields, key or "")
    sandbox.deliverer.send(
        payment.webhook_url,
        urlencode(fields).encode(),
        {"Content-Type": "application/x-www-form-urlencoded"},
        psp="sticpay",
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
    """The customer's decision on the hosted page; False when already decided.

    Sticpay has no API to cancel an order, so a page stays payable for as long as Sticpay
    keeps it open. ``amount``/``currency``: what was paid, when not what was asked for.
    """
    with sandbox.store.lock:
        if payment.state != "PENDING":
            return False
        sandbox.store.set_state(payment, "SUCCESS" if approve else "FAILED")
        if approve:
            sandbox.store.record_paid(payment, amount, currency)
    log.info("sandbox.sticpay.completed", payment_id=payment.id, state=payment.state)
    notify(sandbox, payment)
    return True


@router.get("/pay", include_in_schema=False)
async def pay_page(request: Request) -> Response:
    store = context(request).store
    fields = dict(request.query_params)
    missing = [name for name in _PAGE_FIELDS if not fields.get(name)]
    if missing:
        return page("Invalid payment request", {"Missing": ", ".join(missing)}, None, 400)
    currency = fields["order_currency"]
    amount = parse_amount(fields["order_amount"], currency) if valid_currency(currency) else None
    if amount is None:
        return page("Invalid payment request", {"Amount": fields["order_amount"]}, None, 400)
    if not _signed(store, fields):
        return page("Invalid signature", {"Order": fields["order_no"]}, None, 401)
    merchant, order_no = fields["merchant_email"], fields["order_no"]
    with store.lock:
        # Reloading the page must not open a second payment for the same order.
        existing = store.find("sticpay", merchant, order_no)
        payment = existing[0] if existing else None
        if payment is None:
            payment = Payment(
                id=new_id("stp"),
                psp="sticpay",
                owner=merchant,
                reference_id=order_no,
                payment_type="DEPOSIT",
                state="PENDING",
                amount=amount,
                currency=currency,
                return_url=fields.get("success_url"),
                fail_url=fields.get("fail_url"),
                webhook_url=fields.get("callback_url"),
            )
            store.add(payment)
    rows = {
        "Merchant": merchant,
        "Amount": money_text(payment.amount, payment.currency),
        "Currency": payment.currency,
        "Reference": order_no,
        "Status": payment.state,
    }
    action = f"{base_url(request)}/sticpay/pay/{payment.id}"
    return page("Sticpay (sandbox)", rows, action if payment.state == "PENDING" else None)


@router.post("/pay/{payment_id}", include_in_schema=False)
async def pay_decision(payment_id: str, request: Request) -> Response:
    sandbox = context(request)
    payment = sandbox.store.payments.get(payment_id)
    if payment is None or payment.psp != "sticpay":
        return page("Payment not found", {"Payment": payment_id}, None, 404)
    decision = (await read_fields(request)).get("decision")
    if decision not in ("approve", "decline"):
        return page("Choose Approve or Decline", {"Payment": payment_id}, None, 400)
    complete(sandbox, payment, decision == "approve")
    target = payment.return_url if payment.state == "SUCCESS" else payment.fail_url
    if target:
        return RedirectResponse(target, status_code=303)
    return page("Payment finished", {"Status": payment.state}, None)


@router.post("/api/withdraw")
async def withdraw(request: Request) -> Response:
    sandbox = context(request)
    store = sandbox.store
    status = await api_fault(store, "sticpay")
    if status is not None:
        return _error(status, "UNAVAILABLE", "sandbox fault injection")
    fields = await read_fields(request)
    missing = [n for n in _PAGE_FIELDS if not fields.get(n)]
    if missing:
        return _error(400, "MISSING_PARAMETER", f"missing {', '.join(missing)}")
    if not _signed(store, fields):
        return _error(401, "INVALID_SIGN", "sign does not match")
    kind = _TYPES.get(fields.get("type") or "WITHDRAW")
    currency = fields["order_currency"]
    if kind is None:
        return _error(400, "INVALID_TYPE", "type must be WITHDRAW or REFUND")
    if not valid_currency(currency):
        return _error(400, "INVALID_CURRENCY", "order_currency must be an ISO 4217 code")
    amount = parse_amount(fields["order_amount"], currency)
    if amount is None:
        return _error(400, "INVALID_AMOUNT", "order_amount is not a valid amount")
    if kind == "WITHDRAWAL" and not fields.get("receiver_email"):
        return _error(400, "MISSING_PARAMETER", "missing receiver_email")
    merchant, order_no = fields["merchant_email"], fields["order_no"]
    declined = store.control.fail == "decline"
    with store.lock:
        existing = store.find("sticpay", merchant, order_no)
        if existing:
            # An order number names one order: a repeat gets the same answer.
            return json_response({"code": "OK", "data": view(existing[0])})
        parent = None
        if kind == "REFUND":
            parent = store.owned("sticpay", merchant, fields.get("parent_transaction_id", ""))
            if parent is None or parent.payment_type != "DEPOSIT" or parent.state != "SUCCESS":
                return _error(400, "NOT_REFUNDABLE", "only a successful deposit can be refunded")
            if currency != parent.currency:
                return _error(400, "INVALID_CURRENCY", "a refund is in its deposit's currency")
            remaining = money_text(store.refundable(parent), currency)
            if amount > store.refundable(parent):
                message = f"amount exceeds the refundable {remaining}"
                return _error(400, "AMOUNT_EXCEEDS_REFUNDABLE", message)
        payment = Payment(
            id=new_id("stp"),
            psp="sticpay",
            owner=merchant,
            reference_id=order_no,
            payment_type=kind,
            state="FAILED" if declined else "SUCCESS",
            amount=amount,
            currency=currency,
            webhook_url=fields.get("callback_url"),
            parent_id=parent.id if parent else None,
            error_code="DECLINED_BY_SANDBOX" if declined else None,
        )
        if parent is not None and not declined:
            parent.refunded += amount
        store.add(payment)
    log.info(
        "sandbox.sticpay.created",
        payment_id=payment.id,
        order_no=order_no,
        payment_type=kind,
        state=payment.state,
    )
    notify(sandbox, payment)
    return json_response({"code": "OK", "data": view(payment)})


@router.post("/api/query")
async def query(request: Request) -> Response:
    store = context(request).store
    status = await api_fault(store, "sticpay")
    if status is not None:
        return _error(status, "UNAVAILABLE", "sandbox fault injection")
    fields = await read_fields(request)
    if not fields.get("merchant_email") or not fields.get("order_no"):
        return _error(400, "MISSING_PARAMETER", "merchant_email and order_no are required")
    if not _signed(store, fields):
        return _error(401, "INVALID_SIGN", "sign does not match")
    with store.lock:
        found = store.find("sticpay", fields["merchant_email"], fields["order_no"])
        for payment in found:
            payment.status_reads += 1
    if not found:
        return _error(404, NOT_FOUND_CODE, f"no order {fields['order_no']}")
    return json_response({"code": "OK", "data": view(found[0])})
