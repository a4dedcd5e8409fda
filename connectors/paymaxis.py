"""Paymaxis: a JSON API, a hosted checkout page and HMAC-signed webhooks.

The request and answer shapes are those of the official ``paymaxis`` client (generated from
Paymaxis's OpenAPI document): ``POST /api/v1/payments`` answers ``{"result": {...}}`` with
``id``, ``state`` and, for deposits, ``redirectUrl``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import replace
from datetime import date
from typing import Any, Final, Literal

import structlog

from connectors import paymaxis_reports, transport
from connectors.base import (
    Action,
    Exchange,
    InvalidSignature,
    Navigation,
    Outcome,
    PaymentRequest,
    PspResult,
    SettlementLine,
    UnsignedRefused,
    WebhookEvent,
)
from connectors.money import reported_amount
from connectors.paymaxis_messages import create_body, webhook_payment
from connectors.psp_client import PspClient
from connectors.schemas import logo, payload_schema, text
from connectors.signing import paymaxis_signature_valid
from connxt.settings import get_settings

log = structlog.get_logger()

PRODUCTION_BASE = "https://app.paymaxis.com"

# The same word means different things by when it is heard: DECLINED in the answer to the
# create is a refusal; heard later, it ends a payment that had been accepted.
_AT_INITIATION = {
    "CHECKOUT": Outcome.ACCEPTED,
    "PENDING": Outcome.ACCEPTED,
    "COMPLETED": Outcome.COMPLETED,
    "DECLINED": Outcome.DECLINED,
    "CANCELLED": Outcome.FAILED,
}
_LATER = {**_AT_INITIATION, "DECLINED": Outcome.FAILED}


class PaymaxisConnector:
    name = "Paymaxis"
    logo = logo("paymaxis")
    # Without it a webhook cannot be verified and only prompts an inquiry: optional for a
    # sandbox account; required in production (api_gateway.psps.service), where an account
    # without it has its webhooks refused (`connxt psps check` lists such accounts).
    webhook_signing_field = "webhookSigningKey"
    credential_schema: dict[str, Any] = {
        "type": "object",
        "required": ["apiKey"],
        "properties": {
            "apiKey": {"type": "string", "minLength": 1},
            "webhookSigningKey": {"type": "string", "minLength": 1},
        },
        "additionalProperties": False,
    }
    input_schemas: dict[Action, dict[str, Any]] = {
        Action.DEPOSIT: payload_schema(),
        Action.WITHDRAW: payload_schema(customer_required=True),
        Action.REFUND: payload_schema(),
    }
    currencies = (
        "USD",
        "EUR",
        "GBP",
        "BRL",
        "MXN",
        "CAD",
        "AUD",
        "CHF",
        "PLN",
        "CZK",
        "TRY",
        "INR",
        "ZAR",
        "JPY",
        "KWD",
    )
    countries = (
        "US",
        "GB",
        "DE",
        "FR",
        "ES",
        "IT",
        "NL",
        "PL",
        "CZ",
        "TR",
        "BR",
        "MX",
        "CA",
        "AU",
        "CH",
        "IN",
        "ZA",
        "JP",
        "KW",
    )
    payment_methods = ("Card", "Bank", "Wallet")
    settlement_zone = "UTC"  # its settlement day (connectors.paymaxis_reports)

    def __init__(self, base_url: str | None = None, client: PspClient | None = None):
        self.base_url = (base_url or transport.default_base("paymaxis", PRODUCTION_BASE)).rstrip(
            "/"
        )
        self._client = client

    @property
    def client(self) -> PspClient:
        return self._client or transport.shared_client()

    # -- outbound --------------------------------------------------------------------------

    def initiate(self, credential: dict[str, Any], request: PaymentRequest) -> PspResult:
        api_key = credential.get("apiKey")
        if not api_key:
            return PspResult(Outcome.DECLINED, reason="credential has no apiKey")
        try:
            body = create_body(request)
        except ValueError as exc:
            # Nothing was sent: an amount or refund the PSP could only refuse.
            return PspResult(Outcome.DECLINED, reason=str(exc))

        exchanges: list[Exchange] = []
        if request.may_exist:
            found_result = self._find_existing(api_key, request.txn_id, exchanges)
            if found_result is not None:
                return found_result
        return self._create(api_key, body, request, exchanges)

    def _find_existing(
        self, api_key: str, txn_id: str, exchanges: list[Exchange]
    ) -> PspResult | None:
        """A retry after a lost answer must find the payment, not make another."""
        lookup = self._get(api_key, "/api/v1/payments", {"referenceId": txn_id})
        exchanges.append(lookup.exchange)
        if lookup.unknown:
            return _unknown(lookup, exchanges)
        if lookup.ok:
            found = _matching(lookup.body, txn_id)
            if found is _UNREADABLE:
                return _unknown(lookup, exchanges, "unreadable payment list")
            if found is not None:
                log.info(
                    "connectors.paymaxis.initiate.found",
                    txn_id=txn_id,
                    psp_txn_id=found["id"],
                )
                return _mapped(found, _AT_INITIATION, exchanges)
        # A refused lookup (4xx) falls through: the create gives the definitive answer.
        return None

    def _create(
        self,
        api_key: str,
        body: dict[str, Any],
        request: PaymentRequest,
        exchanges: list[Exchange],
    ) -> PspResult:
        created = transport.send(
            self.client,
            "POST",
            f"{self.base_url}/api/v1/payments",
            json_body=body,
            headers={**_auth(api_key), "Idempotency-Key": request.txn_id},
            psp=self.name,
        )
        exchanges.append(created.exchange)
        if created.rejected:
            reason = _error_reason(created.body) or f"HTTP {created.status}"
            log.info("connectors.paymaxis.initiate.rejected", txn_id=request.txn_id, reason=reason)
            return PspResult(Outcome.DECLINED, reason=reason, exchanges=tuple(exchanges))
        result = _result(created.body) if created.ok else None
        if result is None:
            return _unknown(created, exchanges, None if created.unknown else "unreadable answer")
        mapped = _mapped(result, _AT_INITIATION, exchanges)
        log.debug(  # the transition line says what it changed
            "connectors.paymaxis.initiate.answered",
            txn_id=request.txn_id,
            psp_txn_id=mapped.psp_txn_id,
            psp_state=mapped.psp_state,
            outcome=mapped.outcome,
        )
        return mapped

    def inquire(self, credential: dict[str, Any], txn_id: str, psp_txn_id: str | None) -> PspResult:
        api_key = credential.get("apiKey")
        if not api_key:
            return PspResult(Outcome.UNKNOWN, reason="credential has no apiKey")
        if psp_txn_id:
            call = self._get(api_key, f"/api/v1/payments/{psp_txn_id}", None)
            exchanges = [call.exchange]
            if call.status == 404:
                return PspResult(Outcome.NOT_FOUND, exchanges=tuple(exchanges))
            result = _result(call.body) if call.ok else None
            if result is None:
                return _unknown(call, exchanges, _error_reason(call.body))
            return _owned(result, txn_id, psp_txn_id, exchanges)

        call = self._get(api_key, "/api/v1/payments", {"referenceId": txn_id})
        exchanges = [call.exchange]
        found = _matching(call.body, txn_id) if call.ok else _UNREADABLE
        if found is _UNREADABLE:
            return _unknown(call, exchanges, _error_reason(call.body))
        if found is None:
            return PspResult(Outcome.NOT_FOUND, exchanges=tuple(exchanges))
        return _mapped(found, _LATER, exchanges)

    def cancel(self, credential: dict[str, Any], txn_id: str, psp_txn_id: str) -> PspResult:
        """Close the checkout page of an unpaid payment (expiry)."""
        api_key = credential.get("apiKey")
        if not api_key:
            return PspResult(Outcome.UNKNOWN, reason="credential has no apiKey")
        call = transport.send(
            self.client,
            "POST",
            f"{self.base_url}/api/v1/payments/{psp_txn_id}/cancel",
            headers=_auth(api_key),
            psp=self.name,
        )
        result = _result(call.body) if call.ok else None
        if result is not None:
            cancelled = _owned(result, txn_id, psp_txn_id, [call.exchange])
        elif call.rejected or call.status == 409:
            # Refused, most often because the payment was decided first: how, its current
            # state says (a PSP without a cancel API refuses too, and stays ACCEPTED).
            current = self.inquire(credential, txn_id, psp_txn_id)
            cancelled = replace(current, exchanges=(call.exchange, *current.exchanges))
        else:
            cancelled = _unknown(call, [call.exchange], _error_reason(call.body))
        log.info(
            "connectors.paymaxis.cancel.answered",
            txn_id=txn_id,
            psp_txn_id=psp_txn_id,
            status_code=call.status,
            outcome=cancelled.outcome,
        )
        return cancelled

    def _get(self, api_key: str, path: str, params: dict[str, str] | None) -> transport.Call:
        return transport.send(
            self.client,
            "GET",
            f"{self.base_url}{path}",
            params=params,
            headers=_auth(api_key),
            psp=self.name,
        )

    def settlement_lines(self, credential: dict[str, Any], day: date) -> Iterator[SettlementLine]:
        """The account's settlement report of ``day``, page after page."""
        return paymaxis_reports.settlement_lines(self.base_url, credential.get("apiKey", ""), day)

    # -- inbound ---------------------------------------------------------------------------

    def parse_webhook(
        self, credential: dict[str, Any], headers: dict[str, str], body: bytes
    ) -> WebhookEvent:
        key = credential.get("webhookSigningKey")
        if key:
            signature = _header(headers, "signature")
            if not paymaxis_signature_valid(body, key, signature):
                raise InvalidSignature("Paymaxis Signature does not match the body")
        elif get_settings().is_production:
            # Required when a credential is written in production, but an account made in
            # development or before that rule has none: its bodies are anyone's.
            raise UnsignedRefused("no webhookSigningKey: unsigned bodies are refused")
        payment = webhook_payment(body)
        state = payment["state"]
        return WebhookEvent(
            identity=f"{payment['id']}:{state}",
            txn_id=payment["referenceId"],
            psp_txn_id=payment["id"],
            outcome=_LATER.get(state, Outcome.UNKNOWN),
            psp_state=state,
            verified=bool(key),
            amount=reported_amount(payment.get("amount")),
            currency=text(payment.get("currency")),
        )

    def webhook_identity(self, headers: dict[str, str], body: bytes) -> str:
        payment = webhook_payment(body)
        return f"{payment['id']}:{payment['state']}"


# -- helpers --------------------------------------------------------------------------------


class _Unreadable(enum.Enum):
    """A 2xx answer we could not read: neither "found" nor "none"."""

    UNREADABLE = enum.auto()


_UNREADABLE: Final = _Unreadable.UNREADABLE


def _auth(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}


def _header(headers: dict[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _result(body: Any) -> dict[str, Any] | None:
    result = body.get("result") if isinstance(body, dict) else None
    if isinstance(result, dict) and isinstance(result.get("id"), str):
        return result
    return None


def _matching(body: Any, txn_id: str) -> dict[str, Any] | None | Literal[_Unreadable.UNREADABLE]:
    """The newest listed payment of ``txn_id``, None when there is none, or _UNREADABLE."""
    items = body.get("result") if isinstance(body, dict) else None
    if not isinstance(items, list):
        return _UNREADABLE
    # Filter here too: the list endpoint of the real API may ignore the referenceId filter.
    matches = [
        item
        for item in items
        if isinstance(item, dict)
        and item.get("referenceId") == txn_id
        and isinstance(item.get("id"), str)
    ]
    return matches[-1] if matches else None


def _owned(
    result: dict[str, Any], txn_id: str, psp_txn_id: str, exchanges: list[Exchange]
) -> PspResult:
    """The payment fetched by its Paymaxis id, mapped, if it is really ours."""
    if result.get("referenceId") not in (None, txn_id):
        # Never apply another transaction's state to this one.
        log.error(
            "connectors.paymaxis.reference_mismatch",
            txn_id=txn_id,
            psp_txn_id=psp_txn_id,
            reference_id=result.get("referenceId"),
        )
        return PspResult(
            Outcome.UNKNOWN,
            reason="payment belongs to another reference",
            exchanges=tuple(exchanges),
        )
    return _mapped(result, _LATER, exchanges)


def _mapped(
    result: dict[str, Any], table: dict[str, Outcome], exchanges: list[Exchange]
) -> PspResult:
    state = text(result.get("state")) or ""
    outcome = table.get(state, Outcome.UNKNOWN)
    redirect = text(result.get("redirectUrl"))
    reason = None
    if outcome in (Outcome.DECLINED, Outcome.FAILED):
        reason = text(result.get("errorCode")) or text(result.get("externalResultCode")) or state
    return PspResult(
        outcome=outcome,
        psp_txn_id=result["id"],
        navigation=Navigation(redirect) if outcome is Outcome.ACCEPTED and redirect else None,
        reason=reason,
        psp_state=state or None,
        exchanges=tuple(exchanges),
        amount=reported_amount(result.get("amount")),
        currency=text(result.get("currency")),
    )


def _unknown(
    call: transport.Call, exchanges: list[Exchange], reason: str | None = None
) -> PspResult:
    if reason is None:
        reason = call.exchange.error or f"HTTP {call.status}"
    return PspResult(Outcome.UNKNOWN, reason=reason, exchanges=tuple(exchanges))


def _error_reason(body: Any) -> str | None:
    if not isinstance(body, dict):
        return text(body)
    for key in ("message", "error", "errorCode", "detail"):
        value = body.get(key)
        if isinstance(value, dict):
            value = value.get("message") or value.get("code")
        if text(value):
            return str(value)
    return None
