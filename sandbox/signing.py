"""The simulated PSPs' own signatures, written from their documentation and nothing else.

The sandbox checks the connectors, so it must not share their code: a scheme both sides
got wrong in one shared function would pass every test. Known-answer tests with fixed
vectors (tests/unit/test_signature_vectors.py) hold both implementations to the same
published results.

- Paymaxis signs each webhook with the account's signing key: the ``Signature`` header is
  the lowercase hex HMAC-SHA256 of the raw request body.
- Sticpay signs every form (hosted page query, API calls, callbacks) with the merchant's
  API key: ``sign`` is the lowercase hex SHA-256 of the fields other than ``sign``, sorted
  by name and written ``name=value`` joined by ``&``, followed by ``&key=<API key>``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping


def paymaxis_webhook_signature(body: bytes, signing_key: str) -> str:
    return hmac.digest(signing_key.encode("utf-8"), body, "sha256").hex()


def _sticpay_signed_text(fields: Mapping[str, str], api_key: str) -> bytes:
    parts = [f"{name}={fields[name]}" for name in sorted(fields) if name != "sign"]
    parts.append(f"key={api_key}")
    return "&".join(parts).encode("utf-8")


def sticpay_sign(fields: Mapping[str, str], api_key: str) -> str:
    return hashlib.sha256(_sticpay_signed_text(fields, api_key)).hexdigest()


def sticpay_signature_matches(fields: Mapping[str, str], api_key: str) -> bool:
    """True when the form's ``sign`` is the one its fields and the merchant's key give."""
    given = fields.get("sign")
    if not given:
        return False
    expected = sticpay_sign(fields, api_key)
    # As bytes: compare_digest refuses text with non-ASCII characters (a TypeError).
    return hmac.compare_digest(expected.encode(), given.strip().lower().encode())
