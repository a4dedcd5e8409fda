"""A key that cannot open what the database holds (a second checkout, a lost `.connxt/`):
one sentence naming the cause and the ways out, never a raw InvalidTag traceback."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys

import pytest

from connxt.secrets import key_ring


def connxt(*args: str, keys: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if keys is not None:
        env["CONNXT_ENCRYPTION_KEYS"] = keys
    return subprocess.run(
        [sys.executable, "-m", "commands.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def another_key(kid: str) -> str:
    return f"{kid}:{base64.b64encode(secrets.token_bytes(32)).decode()}"


@pytest.fixture
def sealed_elsewhere(make_tenant):
    """The demo tenant, sealed with this run's key, as the first checkout left it."""
    make_tenant("demo", "sandbox")
    return key_ring().primary


def assert_one_clear_sentence(done: subprocess.CompletedProcess) -> None:
    assert done.returncode == 3, done.stdout + done.stderr
    said = done.stderr.strip()
    assert "Traceback" not in said and "InvalidTag" not in said, said
    assert len(said.splitlines()) == 1 and said.endswith("."), said
    assert "another encryption key" in said
    assert "restore the key" in said and "CONNXT_DB_NAME" in said


@pytest.mark.parametrize("same_kid", [True, False], ids=["same-key-id", "other-key-id"])
def test_a_tenant_command_with_another_key_says_why_in_one_sentence(sealed_elsewhere, same_kid):
    # Two checkouts both call their generated key "dev1": same id, other bytes.
    other = another_key(sealed_elsewhere if same_kid else "elsewhere")
    assert_one_clear_sentence(
        connxt("tenants", "create", "--brand", "demo", "--environment", "sandbox", keys=other)
    )


def test_keys_check_tells_a_fitting_key_from_another(sealed_elsewhere):
    fits = connxt("keys", "check")
    assert fits.returncode == 0, fits.stdout + fits.stderr
    assert_one_clear_sentence(connxt("keys", "check", keys=another_key(sealed_elsewhere)))


def test_fingerprints_tell_keys_apart_without_showing_them():
    ours = connxt("keys", "fingerprint")
    theirs = connxt("keys", "fingerprint", keys=another_key("t1"))
    assert ours.returncode == theirs.returncode == 0
    assert ours.stdout.strip() == key_ring().fingerprint()
    assert len(ours.stdout.strip()) == 8 and ours.stdout != theirs.stdout
    assert os.environ["CONNXT_ENCRYPTION_KEYS"].split(":", 1)[1] not in ours.stdout
