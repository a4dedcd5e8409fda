"""Paymaxis's JSON, in both directions: our payment request out, its payment object in.

Field names are those of the official ``paymaxis`` client (``types/payment_create_params.py``
and ``types/payment.py``); executePayload fields map onto them where they mean the same.
"""

from __future__ import annotations

from typing import Any

from connectors import transport
from connectors.base import Action, BodyNotJson, MalformedWebhook, PaymentRequest
from connectors.money import quantize
from connectors.schemas import body_of, section, text

PAYMENT_TYPE = {
    Action.DEPOSIT: "DEPOSIT",
    Action.WITHDRAW: "WITHDRAWAL",
    Action.REFUND: "REFUND",
}

# executePayload customer fields passed through under the same name (withdrawal details).
_PASS_THROUGH = (
    "accountName",
    "accountNumber",
    "bank",
    "bankBranch",
    "dateOfBirth",
    "documentNumber",
    "documentType",
    "citizenshipCountryCode",
)


def create_body(request: PaymentRequest) -> dict[str, Any]:
    """The JSON body of ``POST /api/v1/payments``; ValueError when it cannot be built."""
    body: dict[str, Any] = {
        "paymentType": PAYMENT_TYPE[request.action],
        "amount": quantize(request.amount, request.currency),
        "currency": request.currency,
        "referenceId": request.txn_id,
        "returnUrl": request.return_url,
        "webhookUrl": request.webhook_url,
    }
    if request.action is Action.REFUND:
        if not request.parent_psp_txn_id:
            raise ValueError("a refund needs the Paymaxis id of the original deposit")
        body["parentPaymentId"] = request.parent_psp_txn_id
    customer = _customer(request.payload)
    if customer:
        body["customer"] = customer
    billing = _billing_address(section(request.payload, "customer").get("address"))
    if billing:
        body["billingAddress"] = billing
    payload_body = body_of(request.payload)
    order = section(request.payload, "order")
    description = text(payload_body.get("description")) or text(order.get("description"))
    if description is None and text(order.get("id")):
        description = f"Order {order['id']}"
    if description:
        body["description"] = description
    if text(payload_body.get("paymentMethod")):
        body["paymentMethod"] = payload_body["paymentMethod"]
    return body


def _customer(payload: dict[str, Any]) -> dict[str, Any]:
    source = section(payload, "customer")
    customer: dict[str, Any] = {}
    for ours, theirs in (
        ("id", "referenceId"),
        ("firstName", "firstName"),
        ("lastName", "lastName"),
        ("email", "email"),
        *((name, name) for name in _PASS_THROUGH),
    ):
        if text(source.get(ours)):
            customer[theirs] = str(source[ours])
    phone = source.get("phone")
    if isinstance(phone, dict):
        # Paymaxis wants "<country code> <number>" without the plus sign.
        number = text(phone.get("phoneNumber"))
        code = (text(phone.get("countryCode")) or "").lstrip("+")
        phone = f"{code} {number}" if code and number else number
    if text(phone):
        customer["phone"] = str(phone).lstrip("+")
    language = text(body_of(payload).get("language"))
    if language:
        customer["locale"] = language
    return customer


def _billing_address(address: Any) -> dict[str, str]:
    if not isinstance(address, dict):
        return {}
    pairs = (
        ("line1", "addressLine1"),
        ("line2", "addressLine2"),
        ("city", "city"),
        ("state", "state"),
        ("zipCode", "postalCode"),
        ("country", "countryCode"),
    )
    return {theirs: str(address[ours]) for ours, theirs in pairs if text(address.get(ours))}


def webhook_payment(body: bytes) -> dict[str, Any]:
    """The payment object of a webhook body; MalformedWebhook when it is not one."""
    try:
        payment = transport.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BodyNotJson("Paymaxis webhook body is not JSON") from exc
    if isinstance(payment, dict) and isinstance(payment.get("result"), dict):
        payment = payment["result"]  # tolerate the API's envelope around the payment
    if not isinstance(payment, dict):
        raise MalformedWebhook("Paymaxis webhook body is not a payment object")
    for field in ("id", "referenceId", "state"):
        if not isinstance(payment.get(field), str) or not payment[field]:
            raise MalformedWebhook(f"Paymaxis webhook has no {field}")
    return payment
