"""What redaction keeps of a payload and of the PSP exchanges: an allowlist, so a field
the merchant named however it liked goes too."""

from __future__ import annotations

from api_gateway.transactions.examples import reference_payload
from storage.personal_data import customer_reference, redacted_meta, redacted_payload


def test_a_payload_keeps_the_order_the_customer_id_and_the_merchants_pages():
    payload = reference_payload("order-1", returnUrl="https://shop.example/back")
    payload["body"]["customer"]["favouriteColour"] = "teal"
    payload["body"]["order"]["description"] = "A gift for Ada Lovelace"
    payload["body"]["customAttributes"] = {"loyaltyName": "Ada"}
    payload["somewhereElse"] = {"email": "ada@example.com"}
    assert redacted_payload(payload) == {
        "body": {
            "order": {
                "id": "order-1",
                "money": {"amount": 12, "currency": "USD"},
                "crmData": {"amount": 12, "currency": "USD", "conversionRate": 1},
                "timestamp": "1758818848508",
            },
            "customer": {"id": "cust_001"},
            "urls": {"returnUrl": "https://shop.example/back"},
        }
    }


def test_whatever_the_payload_is_redaction_answers_a_payload():
    for odd in (None, {}, {"body": "text"}, {"body": {"customer": "Ada", "order": [1]}}, []):
        assert redacted_payload(odd) == {"body": {}}


def test_psp_exchanges_keep_their_shape_without_what_was_said():
    meta = {
        "pspState": "COMPLETED",
        "http": [
            {
                "method": "POST",
                "url": "https://psp.example/api/v1/payments?email=ada@example.com",
                "request": {"customer": {"firstName": "Ada"}},
                "statusCode": 200,
                "response": {"customer": {"lastName": "Lovelace"}},
                "elapsedMs": 12.5,
                "error": None,
            }
        ],
        "extra": {"name": "Ada"},
    }
    assert redacted_meta(meta) == {
        "pspState": "COMPLETED",
        "http": [
            {
                "method": "POST",
                "url": "https://psp.example/api/v1/payments",
                "request": None,
                "statusCode": 200,
                "response": None,
                "elapsedMs": 12.5,
                "error": None,
            }
        ],
    }
    assert redacted_meta(None) is None


def test_an_erased_customer_is_named_by_a_digest():
    named = customer_reference("ada@example.com")
    assert named.startswith("customer sha256:") and "ada" not in named
    assert named == customer_reference("ada@example.com") != customer_reference("bob")
