"""The reference's example request data, shared by the demo, the tests and the benchmarks."""

from __future__ import annotations

import copy
from typing import Any

_CUSTOMER: dict[str, Any] = {
    "id": "cust_001",
    "firstName": "Premium",
    "lastName": "Customer",
    "email": "customer.a@example.com",
    "phone": {"phoneNumber": "1758818848508", "countryCode": "91"},
    "address": {
        "line1": "123 Main St",
        "city": "San Francisco",
        "state": "CA",
        "zipCode": "94103",
        "country": "US",
    },
}


def reference_customer() -> dict[str, Any]:
    return copy.deepcopy(_CUSTOMER)


def reference_payload(order_id: str = "1758818848508", **urls: str) -> dict[str, Any]:
    """Step 3's executePayload as the reference shows it; ``urls`` adds `body.urls`."""
    body: dict[str, Any] = {
        "order": {
            "id": order_id,
            "money": {"amount": 12, "currency": "USD"},
            "crmData": {"amount": 12, "currency": "USD", "conversionRate": 1},
            "timestamp": "1758818848508",
        },
        "customer": reference_customer(),
        "language": "en",
        "customAttributes": {},
    }
    if urls:
        body["urls"] = urls
    return {"body": body}
