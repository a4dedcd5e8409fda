"""PSP signature schemes, webhook parsing, money helpers and the connectors' declared schemas."""

from __future__ import annotations

import hashlib
import hmac
import json
from decimal import Decimal
from urllib.parse import parse_qsl, urlencode, urlsplit

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from api_gateway.transactions.examples import reference_payload
from connectors.base import (
    Action,
    Connector,
    InvalidSignature,
    MalformedWebhook,
    Outcome,
    PaymentRequest,
)
from connectors.money import format_amount, is_iso4217, minor_units, quantize
from connectors.paymaxis import PaymaxisConnector
from connectors.registry import all_connectors, get_connector
from connectors.signing import (
    paymaxis_signature,
    paymaxis_signature_valid,
    sticpay_sign,
    sticpay_sign_valid,
)
from connectors.sticpay import SticpayConnector
from connectors.transport import dumps, loads
from connxt.settings import get_settings

PMX = PaymaxisConnector(base_url="http://psp.invalid/paymaxis")
STP = SticpayConnector(base_url="http://psp.invalid/sticpay")
PMX_CRED = {"apiKey": "pk_test", "webhookSigningKey": "whk_test"}
STP_CRED = {"merchantEmail": "m@example.com", "apiKey": "stp_key"}

REFERENCE_PAYLOAD = reference_payload()


def _pmx_body(state: str = "COMPLETED", **extra) -> bytes:
    payment = {
        "id": "pmx_1",
        "referenceId": "txn_1",
        "state": state,
        "amount": Decimal("12.50"),
        "currency": "USD",
        "paymentType": "DEPOSIT",
        **extra,
    }
    return dumps(payment)


# -- Paymaxis -----------------------------------------------------------------------------


def test_paymaxis_signature_is_hex_hmac_sha256_of_the_raw_body():
    body = _pmx_body()
    expected = hmac.new(b"whk_test", body, hashlib.sha256).hexdigest()
    assert paymaxis_signature(body, "whk_test") == expected


def test_paymaxis_good_signature_is_verified_and_mapped():
    body = _pmx_body()
    event = PMX.parse_webhook(PMX_CRED, {"Signature": paymaxis_signature(body, "whk_test")}, body)
    assert event.verified
    assert event.outcome is Outcome.COMPLETED
    assert (event.txn_id, event.psp_txn_id, event.psp_state) == ("txn_1", "pmx_1", "COMPLETED")
    assert event.identity == "pmx_1:COMPLETED"
    assert event.amount == Decimal("12.50") and event.currency == "USD"


def test_paymaxis_header_name_is_case_insensitive():
    body = _pmx_body()
    event = PMX.parse_webhook(PMX_CRED, {"signature": paymaxis_signature(body, "whk_test")}, body)
    assert event.verified


@pytest.mark.parametrize("signature", ["", "00" * 32, "not-hex", None])
def test_paymaxis_bad_or_missing_signature_raises(signature):
    headers = {} if signature is None else {"Signature": signature}
    with pytest.raises(InvalidSignature):
        PMX.parse_webhook(PMX_CRED, headers, _pmx_body())


def test_paymaxis_signature_with_another_key_raises():
    body = _pmx_body()
    with pytest.raises(InvalidSignature):
        PMX.parse_webhook(PMX_CRED, {"Signature": paymaxis_signature(body, "pk_test")}, body)


def test_paymaxis_tampered_body_raises():
    body = _pmx_body("DECLINED")
    signature = paymaxis_signature(body, "whk_test")
    tampered = body.replace(b"DECLINED", b"COMPLETED")
    with pytest.raises(InvalidSignature):
        PMX.parse_webhook(PMX_CRED, {"Signature": signature}, tampered)


def test_paymaxis_without_signing_key_is_unverified_not_refused():
    body = _pmx_body("DECLINED")
    event = PMX.parse_webhook({"apiKey": "pk_test"}, {"Signature": "whatever"}, body)
    assert not event.verified
    assert event.outcome is Outcome.FAILED  # DECLINED after acceptance ends the payment


@pytest.fixture
def production(monkeypatch):
    monkeypatch.setenv("CONNXT_ENV", "production")
    get_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


def test_paymaxis_without_signing_key_is_refused_in_production(production):
    """An account made before the key was required (or in development) has none: in
    production nobody's unsigned body is taken, not even as a hint."""
    for headers in ({}, {"Signature": "whatever"}):
        with pytest.raises(InvalidSignature):
            PMX.parse_webhook({"apiKey": "pk_test"}, headers, _pmx_body())
    signature = paymaxis_signature(_pmx_body(), PMX_CRED["webhookSigningKey"])
    assert PMX.parse_webhook(PMX_CRED, {"Signature": signature}, _pmx_body()).verified


@pytest.mark.parametrize(
    ("state", "outcome"),
    [
        ("CHECKOUT", Outcome.ACCEPTED),
        ("PENDING", Outcome.ACCEPTED),
        ("COMPLETED", Outcome.COMPLETED),
        ("DECLINED", Outcome.FAILED),
        ("CANCELLED", Outcome.FAILED),
        ("SOMETHING_NEW", Outcome.UNKNOWN),
    ],
)
def test_paymaxis_webhook_states(state, outcome):
    event = PMX.parse_webhook({"apiKey": "k"}, {}, _pmx_body(state))
    assert event.outcome is outcome
    assert PMX.webhook_identity({}, _pmx_body(state)) == f"pmx_1:{state}"


@pytest.mark.parametrize("body", [b"", b"not json", b"[]", b'{"id": "pmx_1", "state": "X"}'])
def test_paymaxis_malformed_webhook(body):
    with pytest.raises(MalformedWebhook):
        PMX.parse_webhook({"apiKey": "k"}, {}, body)
    with pytest.raises(MalformedWebhook):
        PMX.webhook_identity({}, body)


@given(body=st.binary(max_size=512), key=st.text(min_size=1, max_size=40), flip=st.integers(0))
def test_paymaxis_signature_property(body, key, flip):
    signature = paymaxis_signature(body, key)
    assert paymaxis_signature_valid(body, key, signature)
    assert paymaxis_signature_valid(body, key, signature.upper())  # hex case is not meaning
    if body:
        index = flip % len(body)
        changed = body[:index] + bytes([body[index] ^ 1]) + body[index + 1 :]
        assert not paymaxis_signature_valid(changed, key, signature)


# -- Sticpay ------------------------------------------------------------------------------


def test_sticpay_sign_formula():
    params = {"order_no": "txn_1", "merchant_email": "m@example.com", "order_amount": "10.00"}
    text = "merchant_email=m@example.com&order_amount=10.00&order_no=txn_1&key=stp_key"
    assert sticpay_sign(params, "stp_key") == hashlib.sha256(text.encode()).hexdigest()
    # The sign itself is never part of what is signed.
    assert sticpay_sign({**params, "sign": "x"}, "stp_key") == sticpay_sign(params, "stp_key")


_param = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="&="), max_size=20)


@given(params=st.dictionaries(st.from_regex(r"[a-z_]{1,12}", fullmatch=True), _param, min_size=1))
def test_sticpay_sign_is_order_independent_and_tamper_evident(params):
    params.pop("sign", None)
    signed = {**params, "sign": sticpay_sign(params, "stp_key")}
    assert sticpay_sign_valid(dict(reversed(list(signed.items()))), "stp_key")
    assert not sticpay_sign_valid(signed, "other_key")
    name = sorted(params)[0]
    assert not sticpay_sign_valid({**signed, name: params[name] + "1"}, "stp_key")


def _callback(status: str = "SUCCESS", key: str = "stp_key", **override) -> bytes:
    fields = {
        "order_no": "txn_2",
        "transaction_id": "stp_9",
        "status": status,
        "order_amount": "1000",
        "order_currency": "JPY",
    }
    fields["sign"] = sticpay_sign(fields, key)
    fields.update(override)
    return urlencode(fields).encode()


def test_sticpay_callback_verified_and_mapped():
    event = STP.parse_webhook(STP_CRED, {}, _callback())
    assert event.verified and event.outcome is Outcome.COMPLETED
    assert (event.txn_id, event.psp_txn_id, event.identity) == ("txn_2", "stp_9", "stp_9:SUCCESS")
    assert event.amount == Decimal("1000") and event.currency == "JPY"
    assert STP.parse_webhook(STP_CRED, {}, _callback("FAILED")).outcome is Outcome.FAILED
    assert STP.parse_webhook(STP_CRED, {}, _callback("PENDING")).outcome is Outcome.ACCEPTED


@pytest.mark.parametrize(
    "body",
    [_callback(key="wrong"), _callback(status="FAILED", order_amount="5"), _callback(sign="")],
)
def test_sticpay_bad_sign_raises(body):
    with pytest.raises(InvalidSignature):
        STP.parse_webhook(STP_CRED, {}, body)


def test_sticpay_tampered_status_raises():
    body = _callback("FAILED").replace(b"status=FAILED", b"status=SUCCESS")
    with pytest.raises(InvalidSignature):
        STP.parse_webhook(STP_CRED, {}, body)


@pytest.mark.parametrize("body", [b"", b"order_no=x", b"\xff\xfe", b"status=SUCCESS&order_no=x"])
def test_sticpay_malformed_callback(body):
    with pytest.raises(MalformedWebhook):
        STP.parse_webhook(STP_CRED, {}, body)


def test_sticpay_identity_needs_no_key():
    assert STP.webhook_identity({}, _callback(key="anything")) == "stp_9:SUCCESS"


def test_sticpay_deposit_navigation_is_signed_without_any_call():
    request = PaymentRequest(
        txn_id="txn_3",
        action=Action.DEPOSIT,
        amount=Decimal("10.5"),
        currency="USD",
        payload=REFERENCE_PAYLOAD,
        return_url="http://r/ret",
        webhook_url="http://r/hook",
    )
    result = STP.initiate(STP_CRED, request)
    assert result.outcome is Outcome.ACCEPTED and result.exchanges == ()
    url = urlsplit(result.navigation.value)
    assert url.path == "/sticpay/pay"
    params = dict(parse_qsl(url.query))
    assert params["order_amount"] == "10.50" and params["order_no"] == "txn_3"
    assert params["success_url"] == params["fail_url"] == "http://r/ret"
    assert params["callback_url"] == "http://r/hook"
    assert sticpay_sign_valid(params, "stp_key")
    assert STP.initiate(STP_CRED, request) == result  # a retry gives the same page


# -- money --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "places"),
    [
        ("USD", 2),
        ("EUR", 2),
        ("JPY", 0),
        ("KRW", 0),
        ("CLP", 0),
        ("VND", 0),
        ("BHD", 3),
        ("KWD", 3),
        ("OMR", 3),
        ("JOD", 3),
        ("TND", 3),
        ("CLF", 4),
        ("usd", 2),
        ("XYZ", 2),
    ],
)
def test_minor_units(code, places):
    assert minor_units(code) == places


def test_is_iso4217():
    for code in ("USD", "EUR", "GBP", "BRL", "MXN", "JPY", "KWD", "INR", "ZAR"):
        assert is_iso4217(code)
    for code in ("usd", "XYZ", "US", "USDT", "", "BTC", "DEM"):
        assert not is_iso4217(code)


def test_format_amount():
    assert format_amount(Decimal("10.5"), "USD") == "10.50"
    assert format_amount(Decimal("200"), "USD") == "200.00"
    assert format_amount(Decimal("1000"), "JPY") == "1000"
    assert format_amount(Decimal("1.5"), "KWD") == "1.500"
    assert format_amount(Decimal("1E+3"), "EUR") == "1000.00"
    assert format_amount(Decimal("10.500"), "USD") == "10.50"  # trailing zeros are not places
    for amount, currency in (("10.005", "USD"), ("1.5", "JPY"), ("NaN", "USD")):
        with pytest.raises(ValueError):
            format_amount(Decimal(amount), currency)


@given(
    minor=st.integers(min_value=0, max_value=10**15),
    currency=st.sampled_from(["USD", "JPY", "KWD", "CLF", "EUR"]),
)
def test_format_amount_round_trips(minor, currency):
    places = minor_units(currency)
    amount = Decimal(minor).scaleb(-places)
    text = format_amount(amount, currency)
    assert Decimal(text) == amount
    assert (len(text.partition(".")[2])) == places
    assert quantize(amount, currency) == amount


@given(st.decimals(allow_nan=False, allow_infinity=False, places=3))
def test_dumps_keeps_decimals_exact(amount):
    assert loads(dumps({"amount": amount}))["amount"] == amount
    assert json.loads(dumps([amount]))  # valid JSON for any client


# -- declared schemas and the registry ----------------------------------------------------


@pytest.mark.parametrize("connector", [PMX, STP], ids=["paymaxis", "sticpay"])
def test_reference_example_payload_validates_for_deposit(connector):
    jsonschema.Draft202012Validator.check_schema(connector.input_schemas[Action.DEPOSIT])
    jsonschema.validate(REFERENCE_PAYLOAD, connector.input_schemas[Action.DEPOSIT])
    jsonschema.validate(REFERENCE_PAYLOAD, connector.input_schemas[Action.WITHDRAW])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"body": {}}, connector.input_schemas[Action.WITHDRAW])


def test_credential_schemas():
    assert json.dumps(STP.credential_schema, separators=(",", ":")) == (
        '{"type":"object","required":["merchantEmail","apiKey"],"properties":{"apiKey":'
        '{"type":"string"},"merchantEmail":{"type":"string"}},"additionalProperties":false}'
    )
    jsonschema.validate(PMX_CRED, PMX.credential_schema)
    jsonschema.validate({"apiKey": "k"}, PMX.credential_schema)
    for bad in ({}, {"apiKey": ""}, {"apiKey": "k", "other": 1}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, PMX.credential_schema)


def test_registry_lists_both_builtins():
    connectors = all_connectors()
    assert set(connectors) >= {"Paymaxis", "Sticpay"}
    assert get_connector("Paymaxis") is connectors["Paymaxis"]
    for connector in connectors.values():
        assert isinstance(connector, Connector)
        assert connector.logo.startswith("data:image/png;base64,")
        assert len(connector.logo) < 2048
        assert all(is_iso4217(code) for code in connector.currencies)
    with pytest.raises(KeyError):
        get_connector("Nope")
