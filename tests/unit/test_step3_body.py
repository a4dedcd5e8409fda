"""Reading the Step 3 body: bounded in time, exact in money, precise in its errors."""

from __future__ import annotations

import json
import time
from decimal import Decimal

import orjson
import pytest

from api_gateway.errors import BadRequest
from api_gateway.transactions.body import MAX_DIGITS, parse_body, payload_json
from api_gateway.transactions.examples import reference_payload

BASE = {
    "flowActionId": "fat_x",
    "flowTargetId": "ftg_y",
    "pspId": "psp_z",
    "txnCurrency": "USD",
    "txnAmount": 12,
}


def body(**changes) -> bytes:
    return json.dumps({**BASE, "executePayload": reference_payload(), **changes}).encode()


def refusal(raw: bytes) -> list[dict[str, str]]:
    with pytest.raises(BadRequest) as caught:
        parse_body(raw)
    return caught.value.errors


@pytest.mark.parametrize(
    "number", ["1e999999999", "1e1000000", "-1E+400", "9" * 5000, "1." + "1" * 60]
)
def test_a_number_no_payment_needs_is_refused_at_once_naming_its_field(number):
    raw = body().replace(
        b'"executePayload": {', b'"executePayload": {"a": ' + number.encode() + b", "
    )
    started = time.process_time()
    errors = refusal(raw)
    assert time.process_time() - started < 0.05  # no big-integer arithmetic behind it
    assert errors[0]["field"] == "executePayload.a"
    assert "out of range" in errors[0]["message"]


def test_an_out_of_range_amount_names_the_amount():
    raw = body().replace(b'"txnAmount": 12', b'"txnAmount": 1e999999999')
    assert refusal(raw)[0]["field"] == "txnAmount"


def test_nan_and_infinity_are_not_json_numbers():
    for constant in (b"NaN", b"Infinity", b"-Infinity"):
        raw = body().replace(b'"txnAmount": 12', b'"txnAmount": ' + constant)
        assert refusal(raw)[0]["field"] == "body"


def test_amounts_are_exact_decimals_and_payload_numbers_are_stored_as_written():
    raw = body().replace(b'"txnAmount": 12', b'"txnAmount": 12.10')
    raw = raw.replace(
        b'"executePayload": {', b'"executePayload": {"rate": 0.1000000000000000055511, '
    )
    parsed = parse_body(raw)
    assert parsed.txnAmount == Decimal("12.10") and isinstance(parsed.txnAmount, Decimal)
    stored = payload_json(parsed.executePayload)
    assert '"rate":0.1000000000000000055511' in stored  # not a float's 0.1
    assert orjson.loads(stored)["body"]["order"]["id"] == "1758818848508"


def test_largest_allowed_numbers_still_pass():
    big = "9" * MAX_DIGITS
    raw = body().replace(b'"executePayload": {', b'"executePayload": {"n": ' + big.encode() + b", ")
    assert payload_json(parse_body(raw).executePayload).startswith('{"n":' + big)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('"x\\ud800"', "executePayload.a"),  # a lone surrogate: valid JSON, not storable
        ('"x\\u0000y"', "executePayload.a"),  # NUL: PostgreSQL text cannot hold it
    ],
)
def test_text_postgresql_cannot_store_is_refused(text, field):
    raw = body().replace(
        b'"executePayload": {', b'"executePayload": {"a": ' + text.encode() + b", "
    )
    assert refusal(raw)[0]["field"] == field


def test_nesting_is_bounded():
    deep = "[" * 70 + "]" * 70
    raw = body().replace(
        b'"executePayload": {', b'"executePayload": {"a": ' + deep.encode() + b", "
    )
    assert "nested deeper" in refusal(raw)[0]["message"]
