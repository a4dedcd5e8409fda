"""Sticpay: a hosted payment page opened with signed form parameters, form callbacks.

A deposit costs no HTTP call: the customer's browser carries the signed parameters to
``{base}/pay``. Withdrawals and refunds are signed ``POST {base}/api/withdraw``; status is a
signed ``POST {base}/api/query`` by our order number. Every message is signed with the
merchant's API key (``connectors.signing.sticpay_sign``), callbacks included.

Sticpay offers no way to cancel an order, so this connector has no ``cancel``: a hosted
page stays payable after Connxt expires the deposit, and a success that arrives then is
recorded as a late success for the merchant and an operator.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl, urlencode

import structlog

from connectors import sticpay_reports, transport
from connectors.base import (
    Action,
    Exchange,
    InvalidSignature,
    MalformedWebhook,
    Navigation,
    Outcome,
    PaymentRequest,
    PspResult,
    SettlementLine,
    WebhookEvent,
)
from connectors.money import format_amount, reported_amount
from connectors.psp_client import PspClient
from connectors.schemas import CUSTOMER_SCHEMA, logo, payload_schema, section, text
from connectors.signing import sticpay_sign, sticpay_sign_valid

log = structlog.get_logger()

PRODUCTION_BASE = "https://pay.sticpay.com"

# FAILED in the answer to a withdrawal is a refusal; heard later it ends an accepted one.
_LATER = {"PENDING": Outcome.ACCEPTED, "SUCCESS": Outcome.COMPLETED, "FAILED": Outcome.FAILED}
_AT_INITIATION = {**_LATER, "FAILED": Outcome.DECLINED}

NOT_FOUND_CODE = "ORDER_NOT_FOUND"
CALLBACK_FIELDS = ("order_no", "transaction_id", "status", "order_amount", "order_currency")


class SticpayConnector:
    name = "Sticpay"
    logo = logo("sticpay")
    credential_schema: dict[str, Any] = {
        "type": "object",
        "required": ["merchantEmail", "apiKey"],
        "properties": {"apiKey": {"type": "string"}, "merchantEmail": {"type": "string"}},
        "additionalProperties": False,
    }
    input_schemas: dict[Action, dict[str, Any]] = {
        Action.DEPOSIT: payload_schema(),
        # The payout goes to the customer's Sticpay wallet, named by its email.
        Action.WITHDRAW: payload_schema(
            customer_required=True, customer={**CUSTOMER_SCHEMA, "required": ["email"]}
        ),
        Action.REFUND: payload_schema(),
    }
    currencies = (
        "USD",
        "EUR",
        "GBP",
        "JPY",
        "KRW",
        "CNY",
        "HKD",
        "SGD",
        "AUD",
        "CAD",
        "MYR",
        "THB",
        "IDR",
        "PHP",
        "VND",
        "INR",
    )
    countries = (
        "KR",
        "JP",
        "CN",
        "HK",
        "SG",
        "MY",
        "TH",
        "ID",
        "PH",
        "VN",
        "IN",
        "AU",
        "GB",
        "DE",
    )
    payment_methods = ("Bank", "Card", "Wallet")
    settlement_zone = sticpay_reports.ZONE  # its settlement day: a Seoul day

    def __init__(self, base_url: str | None = None, client: PspClient | None = None):
        self.base_url = (base_url or transport.default_base("sticpay", PRODUCTION_BASE)).rstrip("/")
        self._client = client

    @property
    def client(self) -> PspClient:
        return self._client or transport.shared_client()

    # -- outbound --------------------------------------------------------------------------

    def initiate(self, credential: dict[str, Any], request: PaymentRequest) -> PspResult:
        merchant, api_key = credential.get("merchantEmail"), credential.get("apiKey")
        if not merchant or not api_key:
            return PspResult(Outcome.DECLINED, reason="credential needs merchantEmail and apiKey")
        try:
            amount = format_amount(request.amount, request.currency)
        except ValueError as exc:
            return PspResult(Outcome.DECLINED, reason=str(exc))
        if request.action is Action.DEPOSIT:
            return self._hosted_page(merchant, api_key, amount, request)

        exchanges: list[Exchange] = []
        if request.may_exist:
            found_result = self._find_existing(merchant, api_key, request.txn_id, exchanges)
            if found_result is not None:
                return found_result
        return self._send_payout(merchant, api_key, amount, request, exchanges)

    def _find_existing(
        self, merchant: str, api_key: str, txn_id: str, exchanges: list[Exchange]
    ) -> PspResult | None:
        """A retry after a lost answer must find the payout, not send another."""
        query = self._query(merchant, api_key, txn_id)
        exchanges.append(query.exchange)
        found = _order(query)
        if found is _UNREADABLE and not query.rejected:
            return _unknown(query, exchanges)
        # A refused query (4xx) falls through: the withdraw gives the definitive answer.
        if found is not None and found is not _UNREADABLE:
            log.info(
                "connectors.sticpay.initiate.found",
                txn_id=txn_id,
                psp_txn_id=found.get("transaction_id"),
            )
            return _mapped(found, _AT_INITIATION, exchanges)
        return None

    def _send_payout(
        self,
        merchant: str,
        api_key: str,
        amount: str,
        request: PaymentRequest,
        exchanges: list[Exchange],
    ) -> PspResult:
        params = {
            "merchant_email": merchant,
            "order_no": request.txn_id,
            "order_amount": amount,
            "order_currency": request.currency,
            "callback_url": request.webhook_url,
            "type": "REFUND" if request.action is Action.REFUND else "WITHDRAW",
        }
        if request.action is Action.REFUND:
            if not request.parent_psp_txn_id:
                return PspResult(
                    Outcome.DECLINED,
                    reason="a refund needs the deposit's id",
                    exchanges=tuple(exchanges),
                )
            params["parent_transaction_id"] = request.parent_psp_txn_id
        else:
            receiver = text(section(request.payload, "customer").get("email"))
            if receiver is None:
                return PspResult(
                    Outcome.DECLINED,
                    reason="a withdrawal needs customer.email",
                    exchanges=tuple(exchanges),
                )
            params["receiver_email"] = receiver
        call = self._post("/api/withdraw", params, api_key)
        exchanges.append(call.exchange)
        if call.rejected:
            reason = _message(call.body) or f"HTTP {call.status}"
            log.info("connectors.sticpay.initiate.rejected", txn_id=request.txn_id, reason=reason)
            return PspResult(Outcome.DECLINED, reason=reason, exchanges=tuple(exchanges))
        data = _data(call.body) if call.ok else None
        if data is None:
            return _unknown(call, exchanges, None if call.unknown else "unreadable answer")
        mapped = _mapped(data, _AT_INITIATION, exchanges)
        log.debug(  # the transition line says what it changed
            "connectors.sticpay.initiate.answered",
            txn_id=request.txn_id,
            psp_txn_id=mapped.psp_txn_id,
            psp_state=mapped.psp_state,
            outcome=mapped.outcome,
        )
        return mapped

    def _hosted_page(
        self, merchant: str, api_key: str, amount: str, request: PaymentRequest
    ) -> PspResult:
        params = {
            "merchant_email": merchant,
            "order_no": request.txn_id,
            "order_amount": amount,
            "order_currency": request.currency,
            "success_url": request.return_url,
            "fail_url": request.return_url,
            "callback_url": request.webhook_url,
        }
        params["sign"] = sticpay_sign(params, api_key)
        # The same txn always yields the same URL, so a retried initiate is harmless.
        return PspResult(
            Outcome.ACCEPTED,
            navigation=Navigation(f"{self.base_url}/pay?{urlencode(params)}"),
        )

    def inquire(self, credential: dict[str, Any], txn_id: str, psp_txn_id: str | None) -> PspResult:
        merchant, api_key = credential.get("merchantEmail"), credential.get("apiKey")
        if not merchant or not api_key:
            return PspResult(Outcome.UNKNOWN, reason="credential needs merchantEmail and apiKey")
        call = self._query(merchant, api_key, txn_id)
        exchanges = [call.exchange]
        found = _order(call)
        if found is _UNREADABLE:
            return _unknown(call, exchanges)
        if found is None:
            return PspResult(Outcome.NOT_FOUND, exchanges=tuple(exchanges))
        return _mapped(found, _LATER, exchanges)

    def _query(self, merchant: str, api_key: str, order_no: str) -> transport.Call:
        return self._post("/api/query", {"merchant_email": merchant, "order_no": order_no}, api_key)

    def _post(self, path: str, params: dict[str, str], api_key: str) -> transport.Call:
        form = {**params, "sign": sticpay_sign(params, api_key)}
        return transport.send(
            self.client, "POST", f"{self.base_url}{path}", form=form, psp=self.name
        )

    def settlement_lines(self, credential: dict[str, Any], day: date) -> Iterator[SettlementLine]:
        """The merchant's settlement file of ``day`` (a Seoul day), row after row."""
        merchant, api_key = credential.get("merchantEmail", ""), credential.get("apiKey", "")
        return sticpay_reports.settlement_lines(self.base_url, merchant, api_key, day)

    # -- inbound ---------------------------------------------------------------------------

    def parse_webhook(
        self, credential: dict[str, Any], headers: dict[str, str], body: bytes
    ) -> WebhookEvent:
        fields = _callback(body)
        api_key = credential.get("apiKey")
        # Sticpay signs with the API key itself, so a configured PSP can always verify.
        if api_key and not sticpay_sign_valid(fields, api_key):
            raise InvalidSignature("Sticpay sign does not match the callback")
        status = fields["status"]
        try:
            amount = Decimal(fields["order_amount"]) if fields.get("order_amount") else None
        except InvalidOperation as exc:
            raise MalformedWebhook("Sticpay callback has a bad order_amount") from exc
        return WebhookEvent(
            identity=f"{fields['transaction_id']}:{status}",
            txn_id=fields["order_no"],
            psp_txn_id=fields["transaction_id"],
            outcome=_LATER.get(status, Outcome.UNKNOWN),
            psp_state=status,
            verified=bool(api_key),
            amount=amount,
            currency=fields.get("order_currency") or None,
        )

    def webhook_identity(self, headers: dict[str, str], body: bytes) -> str:
        fields = _callback(body)
        return f"{fields['transaction_id']}:{fields['status']}"


# -- helpers --------------------------------------------------------------------------------

_UNREADABLE = object()  # no usable answer: neither "found" nor "none"


def _callback(body: bytes) -> dict[str, str]:
    try:
        pairs = parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=True)
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedWebhook("Sticpay callback is not a form body") from exc
    fields = dict(pairs)
    for name in ("order_no", "transaction_id", "status"):
        if not fields.get(name):
            raise MalformedWebhook(f"Sticpay callback has no {name}")
    return fields


def _data(body: Any) -> dict[str, Any] | None:
    data = body.get("data") if isinstance(body, dict) else None
    if isinstance(data, dict) and isinstance(data.get("transaction_id"), str):
        return data
    return None


def _order(call: transport.Call) -> Any:
    """The queried order, None when Sticpay has none, or _UNREADABLE."""
    if isinstance(call.body, dict) and call.body.get("code") == NOT_FOUND_CODE:
        return None if call.status in (200, 404) else _UNREADABLE
    return (_data(call.body) if call.ok else None) or _UNREADABLE


def _mapped(
    data: dict[str, Any], table: dict[str, Outcome], exchanges: list[Exchange]
) -> PspResult:
    status = text(data.get("status")) or ""
    outcome = table.get(status, Outcome.UNKNOWN)
    reason = None
    if outcome in (Outcome.DECLINED, Outcome.FAILED):
        reason = text(data.get("message")) or status
    return PspResult(
        outcome=outcome,
        psp_txn_id=data["transaction_id"],
        reason=reason,
        psp_state=status or None,
        exchanges=tuple(exchanges),
        amount=reported_amount(data.get("order_amount")),
        currency=text(data.get("order_currency")),
    )


def _unknown(
    call: transport.Call, exchanges: list[Exchange], reason: str | None = None
) -> PspResult:
    if reason is None:
        reason = call.exchange.error or _message(call.body) or f"HTTP {call.status}"
    return PspResult(Outcome.UNKNOWN, reason=reason, exchanges=tuple(exchanges))


def _message(body: Any) -> str | None:
    if isinstance(body, dict):
        return text(body.get("message")) or text(body.get("code"))
    return text(body)
