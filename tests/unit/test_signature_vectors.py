"""Known answers for every signature scheme, held against both sides of each.

The connectors (connectors/signing.py, workers/notify.py) and the sandbox
(sandbox/signing.py; its merchant receiver verifies notifications with the Standard
Webhooks reference library) implement each scheme separately; these fixed vectors were
computed outside the project:

    printf '%s' "$BODY" | openssl dgst -sha256 -hmac "$KEY"          # Paymaxis
    printf '%s' "$FIELDS&key=$API_KEY" | sha256sum                      # Sticpay

and the Standard Webhooks vector is the one the Standard Webhooks specification publishes.
Then each direction is run through the real code: what one side signs, the other accepts.
"""

from __future__ import annotations

import base64
import subprocess
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from standardwebhooks import Webhook

from connectors import signing as connector_signing
from connectors.base import Action, InvalidSignature, PaymentRequest
from connectors.paymaxis import PaymaxisConnector
from connectors.sticpay import SticpayConnector
from sandbox import merchant as sandbox_merchant
from sandbox import signing as sandbox_signing
from workers import notify

# Paymaxis: the webhook's Signature header.
PAYMAXIS_KEY = "whk_test_vector_key"
PAYMAXIS_BODY = (
    b'{"id":"pmx_0001","referenceId":"txn_01JABCDEF","state":"COMPLETED",'
    b'"amount":"200.00","currency":"USD"}'
)
PAYMAXIS_SIGNATURE = "a3c7f23da30774502ef6aad196d78051d2c636a96cf18a896efc8e16b8dc6949"

# Sticpay: a hosted page's query (what the connector signs) and a callback (what Sticpay
# signs), both with the merchant's API key.
STICPAY_KEY = "stk_test_vector_key"
STICPAY_PAGE = {
    "merchant_email": "merchant@shop.example",
    "order_no": "txn_01JABCDEF",
    "order_amount": "12.50",
    "order_currency": "USD",
}
STICPAY_PAGE_SIGN = "da420750dd8f2a7db2bb12889aef882c426186321b47bb0dc9aca83e0e056e1f"
STICPAY_CALLBACK = {
    "order_no": "txn_01JABCDEF",
    "transaction_id": "stp_0001",
    "status": "SUCCESS",
    "order_amount": "12.50",
    "order_currency": "USD",
}
STICPAY_CALLBACK_SIGN = "521cf22fe9afce4e65ba9d5c6b113c1a08ebea62cea1d618919e4c7370fd6f08"

# Standard Webhooks (merchant notifications): the specification's own test vector.
SW_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SW_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SW_TIMESTAMP = 1614265330
SW_BODY = b'{"test": 2432232314}'
SW_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_paymaxis_vector_on_both_sides():
    assert connector_signing.paymaxis_signature(PAYMAXIS_BODY, PAYMAXIS_KEY) == PAYMAXIS_SIGNATURE
    assert (
        sandbox_signing.paymaxis_webhook_signature(PAYMAXIS_BODY, PAYMAXIS_KEY)
        == PAYMAXIS_SIGNATURE
    )


def test_the_connector_accepts_a_sandbox_signed_paymaxis_webhook():
    connector = PaymaxisConnector()
    credential = {"apiKey": "pmx_1", "webhookSigningKey": PAYMAXIS_KEY}
    signature = sandbox_signing.paymaxis_webhook_signature(PAYMAXIS_BODY, PAYMAXIS_KEY)
    event = connector.parse_webhook(credential, {"signature": signature}, PAYMAXIS_BODY)
    assert event.verified and event.txn_id == "txn_01JABCDEF"
    with pytest.raises(InvalidSignature):
        connector.parse_webhook(credential, {"signature": signature}, PAYMAXIS_BODY + b" ")
    other_key = sandbox_signing.paymaxis_webhook_signature(PAYMAXIS_BODY, "another key")
    with pytest.raises(InvalidSignature):
        connector.parse_webhook(credential, {"signature": other_key}, PAYMAXIS_BODY)


def test_sticpay_vectors_on_both_sides():
    for fields, expected in (
        (STICPAY_PAGE, STICPAY_PAGE_SIGN),
        (STICPAY_CALLBACK, STICPAY_CALLBACK_SIGN),
    ):
        assert connector_signing.sticpay_sign(fields, STICPAY_KEY) == expected
        assert sandbox_signing.sticpay_sign(fields, STICPAY_KEY) == expected
        # A ``sign`` among the fields is not itself signed.
        assert sandbox_signing.sticpay_sign({**fields, "sign": "x"}, STICPAY_KEY) == expected


def test_the_sandbox_accepts_a_page_the_connector_signed():
    connector = SticpayConnector()
    credential = {"merchantEmail": "merchant@shop.example", "apiKey": STICPAY_KEY}
    request = PaymentRequest(
        txn_id="txn_01JABCDEF",
        action=Action.DEPOSIT,
        amount=Decimal("12.5"),
        currency="USD",
        payload={},
        return_url="https://connxt.example/back",
        webhook_url="https://connxt.example/hook",
        may_exist=False,
    )
    result = connector.initiate(credential, request)
    fields = dict(parse_qsl(urlsplit(result.navigation.value).query))
    assert sandbox_signing.sticpay_signature_matches(fields, STICPAY_KEY)
    assert not sandbox_signing.sticpay_signature_matches(fields, "another key")
    tampered = {**fields, "order_amount": "1.00"}
    assert not sandbox_signing.sticpay_signature_matches(tampered, STICPAY_KEY)
    # A signature that is not ASCII is refused, not a TypeError.
    forged = {**fields, "sign": "é" * len(fields["sign"])}
    assert not sandbox_signing.sticpay_signature_matches(forged, STICPAY_KEY)
    # The fields of the fixed vector, signed as the vector says.
    unsigned = {k: v for k, v in fields.items() if k in STICPAY_PAGE}
    assert unsigned == STICPAY_PAGE
    page_only = {**unsigned, "sign": STICPAY_PAGE_SIGN}
    assert sandbox_signing.sticpay_signature_matches(page_only, STICPAY_KEY)


def test_the_connector_accepts_a_sandbox_signed_sticpay_callback():
    connector = SticpayConnector()
    credential = {"merchantEmail": "merchant@shop.example", "apiKey": STICPAY_KEY}
    fields = {
        **STICPAY_CALLBACK,
        "sign": sandbox_signing.sticpay_sign(STICPAY_CALLBACK, STICPAY_KEY),
    }
    assert fields["sign"] == STICPAY_CALLBACK_SIGN
    event = connector.parse_webhook(credential, {}, urlencode(fields).encode())
    assert event.verified and event.txn_id == "txn_01JABCDEF" and event.amount == Decimal("12.50")
    forged = urlencode({**fields, "status": "FAILED"}).encode()
    with pytest.raises(InvalidSignature):
        connector.parse_webhook(credential, {}, forged)


def test_standard_webhooks_vector_on_both_sides():
    assert notify.sign(SW_SECRET, SW_ID, SW_TIMESTAMP, SW_BODY) == SW_SIGNATURE
    signed_at = datetime.fromtimestamp(SW_TIMESTAMP, UTC)
    assert Webhook(SW_SECRET).sign(SW_ID, signed_at, SW_BODY) == SW_SIGNATURE


def test_the_sandbox_merchant_verifies_what_connxt_signs_with_the_reference_library():
    now = int(time.time())
    headers = {
        "webhook-id": SW_ID,
        "webhook-timestamp": str(now),
        "webhook-signature": notify.sign(SW_SECRET, SW_ID, now, SW_BODY),
    }
    assert sandbox_merchant.verify(SW_SECRET, headers, SW_BODY)
    assert not sandbox_merchant.verify(SW_SECRET, headers, SW_BODY + b" ")
    other = "whsec_" + base64.b64encode(b"another key, 32 bytes long......").decode()
    assert not sandbox_merchant.verify(other, headers, SW_BODY)
    # During a rotation both signatures are sent: either one verifies.
    both = f"{notify.sign(other, SW_ID, now, SW_BODY)} {headers['webhook-signature']}"
    assert sandbox_merchant.verify(SW_SECRET, {**headers, "webhook-signature": both}, SW_BODY)
    # The vector's own timestamp is years old: outside the replay window.
    stale = {**headers, "webhook-timestamp": str(SW_TIMESTAMP)}
    stale["webhook-signature"] = SW_SIGNATURE
    assert not sandbox_merchant.verify(SW_SECRET, stale, SW_BODY)


def test_the_sandbox_runs_without_the_connectors_signing_code():
    """Were connectors/signing.py gone, the sandbox would still start: it signs on its own."""
    probe = (
        "import sys; sys.modules['connectors.signing'] = None; "
        "sys.modules['connectors.sticpay'] = None; sys.modules['connectors.paymaxis'] = None; "
        "import sandbox.app; sandbox.app.create_app()"
    )
    ran = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
