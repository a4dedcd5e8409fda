"""The console's parts that need no server: operator tokens, the sealed session, redaction
of what pages show, the status path."""

from __future__ import annotations

import base64
import dataclasses
import time
from types import SimpleNamespace

import pytest

from connxt.secrets import hash_token
from console.auth import OperatorConfigError, parse_operators
from console.render import safe_next
from console.service import pretty, redacted_url, status_path, stored_body
from console.session import anonymous, csrf_matches, seal, signed_in_as, unseal


def test_operator_tokens_in_clear_or_as_digests():
    digest = hash_token("another-long-operator-token")
    alice, bob = parse_operators(f" alice:a-long-operator-token-1 , bob:sha256:{digest.upper()}")
    assert (alice.name, alice.digest) == ("alice", hash_token("a-long-operator-token-1"))
    assert (bob.name, bob.digest) == ("bob", digest)
    assert parse_operators("") == []


@pytest.mark.parametrize(
    "spec",
    [
        "alice",  # no token
        "alice:short",  # too short to be a secret
        "al ice:a-long-operator-token-1",  # not a name
        "alice:sha256:abc",  # not a digest
        "alice:a-long-operator-token-1,alice:a-long-operator-token-2",  # twice
    ],
)
def test_malformed_operator_tokens_are_refused_without_showing_them(spec):
    with pytest.raises(OperatorConfigError) as refused:
        parse_operators(spec)
    assert "operator-token" not in str(refused.value)


def test_a_sealed_session_opens_only_unchanged_and_unexpired():
    session = signed_in_as("tenant", "Ada", token_id=42)
    value = seal(session)
    assert unseal(value) == session
    key_id, _, blob = value.partition(".")
    # Sealed, not merely signed: nothing of it can be read from the cookie.
    assert b"Ada" not in base64.urlsafe_b64decode(blob + "=" * (-len(blob) % 4))
    # A character in the middle (the last one may carry unused bits).
    middle = len(blob) // 2
    flipped = blob[:middle] + ("A" if blob[middle] != "A" else "B") + blob[middle + 1 :]
    for broken in (f"{key_id}.{flipped}", f"nokey.{blob}", "garbage", "", "x" * 5000):
        assert unseal(broken) is None
    expired = dataclasses.replace(session, expires=time.time() - 1)
    assert unseal(seal(expired)) is None


def test_csrf_tokens_are_per_session():
    one, other = anonymous(), anonymous()
    assert csrf_matches(one, one.csrf)
    assert not csrf_matches(one, other.csrf)
    assert not csrf_matches(one, "") and not csrf_matches(one, None)
    # Not ASCII: refused like any other forgery, not a TypeError (a 500).
    assert not csrf_matches(one, "é" * len(one.csrf))
    # Signing in starts afresh: the anonymous token no longer counts.
    assert signed_in_as("operator", "alice").csrf != one.csrf


def test_what_pages_show_is_redacted():
    url = "https://merchant.example/hook?token=abc123&order=7&api_key=k"
    shown = redacted_url(url)
    assert "abc123" not in shown and "=k" not in shown and "order=7" in shown
    assert "sec_abcdefghijkl" not in pretty({"note": "Bearer xyz sec_abcdefghijkl"})
    assert "hunter2" not in pretty({"credential": {"password": "hunter2"}})
    assert "whsec_" not in stored_body(b'{"secret": "whsec_aaaaaaaaaaaa", "state": "COMPLETED"}')
    assert "COMPLETED" in stored_body(b'{"state": "COMPLETED"}')
    assert stored_body(b"not json sec_abcdefghijkl") == "not json ***"


def test_the_status_path_leaves_out_notes():
    def step(from_status, to_status):
        return SimpleNamespace(from_status=from_status, to_status=to_status)

    events = [
        step("NEW", "CREATED"),
        step("CREATED", "INITIATED"),
        step("INITIATED", "PG_ACCEPTED"),
        step("PG_ACCEPTED", "PG_ACCEPTED"),  # held for review
        step("PG_ACCEPTED", "FAILED"),
        step("FAILED", "FAILED"),  # an operator's note
    ]
    assert status_path(events) == ["NEW", "CREATED", "INITIATED", "PG_ACCEPTED", "FAILED"]


@pytest.mark.parametrize(
    ("asked", "allowed"),
    [
        ("/transactions/txn_1", "/transactions/txn_1"),
        ("/psps?x=1", "/psps?x=1"),
        ("//evil.example", "/transactions"),
        ("https://evil.example", "/transactions"),
        ("/\\evil.example", "/transactions"),
        ("", "/transactions"),
    ],
)
def test_after_sign_in_only_pages_of_the_console(asked, allowed):
    assert safe_next(asked) == allowed
