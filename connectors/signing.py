"""Signature schemes of the built-in PSPs, as the connectors sign and verify them.

The sandbox has its own implementation of each (sandbox/signing.py), so that a scheme got
wrong here fails against it; known-answer tests with fixed vectors hold both sides to the
same results (tests/unit/test_signature_vectors.py). Comparisons are constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping


def paymaxis_signature(body: bytes, key: str) -> str:
    """Paymaxis webhook ``Signature`` header: hex HMAC-SHA256 of the raw body."""
    return hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


def paymaxis_signature_valid(body: bytes, key: str, signature: str | None) -> bool:
    if not signature:
        return False
    expected = paymaxis_signature(body, key)
    return hmac.compare_digest(expected.encode(), signature.strip().lower().encode())


def sticpay_sign(params: Mapping[str, object], api_key: str) -> str:
    """Sticpay ``sign``: hex SHA-256 of ``k=v&k=v`` (sorted, without sign) + ``&key=<apiKey>``.

    Values are signed as sent (their text), so amounts must already be formatted.
    """
    base = "&".join(f"{k}={params[k]}" for k in sorted(params) if k != "sign")
    return hashlib.sha256(f"{base}&key={api_key}".encode()).hexdigest()


def sticpay_sign_valid(params: Mapping[str, object], api_key: str) -> bool:
    sign = params.get("sign")
    if not isinstance(sign, str) or not sign:
        return False
    expected = sticpay_sign(params, api_key)
    return hmac.compare_digest(expected.encode(), sign.strip().lower().encode())
