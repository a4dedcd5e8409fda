"""The credential key ring (AES-256-GCM, rotation) and API token hashing."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from pathlib import Path

import pytest

from connxt.secrets import (
    KeyRing,
    KeyRingError,
    Sealed,
    SecretUnreadable,
    generate_key_spec,
    hash_token,
    load_key_ring,
)
from connxt.settings import Settings
from connxt.state import local_key_path, state_dir

AAD = b"psp-credential:psp_123"
PLAIN = b'{"apiKey":"sk_live_abcdef"}'


def spec(kid: str, key: bytes | None = None) -> str:
    return f"{kid}:{base64.b64encode(key or os.urandom(32)).decode()}"


def test_seal_open_roundtrip():
    ring = KeyRing.parse(generate_key_spec("k1"))
    sealed = ring.seal(PLAIN, AAD)
    assert sealed.key_id == "k1"
    assert PLAIN not in sealed.blob and b"sk_live" not in sealed.blob
    assert len(sealed.blob) == 12 + len(PLAIN) + 16  # nonce + ciphertext + tag
    assert ring.open(sealed, AAD) == PLAIN


def test_each_seal_uses_a_fresh_nonce():
    ring = KeyRing.parse(generate_key_spec())
    first, second = ring.seal(PLAIN, AAD), ring.seal(PLAIN, AAD)
    assert first.blob[:12] != second.blob[:12]
    assert first.blob != second.blob


@pytest.mark.parametrize("other", [b"psp-credential:psp_456", b"", AAD + b"x"])
def test_wrong_associated_data_does_not_open(other):
    ring = KeyRing.parse(generate_key_spec())
    with pytest.raises(SecretUnreadable):
        ring.open(ring.seal(PLAIN, AAD), other)


def test_tampered_blob_does_not_open():
    ring = KeyRing.parse(generate_key_spec())
    sealed = ring.seal(PLAIN, AAD)
    flipped = bytes([sealed.blob[20] ^ 1])
    with pytest.raises(SecretUnreadable):
        ring.open(Sealed(sealed.key_id, sealed.blob[:20] + flipped + sealed.blob[21:]), AAD)


def test_another_key_under_the_same_id_does_not_open():
    sealed = KeyRing.parse(spec("k1")).seal(PLAIN, AAD)
    with pytest.raises(SecretUnreadable):
        KeyRing.parse(spec("k1")).open(sealed, AAD)


def test_rotation_opens_old_and_seals_with_new():
    k1, k2 = spec("k1"), spec("k2")
    old = KeyRing.parse(k1).seal(PLAIN, AAD)
    rotated = KeyRing.parse(f"{k2},{k1}")
    assert rotated.primary == "k2"
    assert rotated.open(old, AAD) == PLAIN
    new = rotated.seal(PLAIN, AAD)
    assert new.key_id == "k2"
    # The old ring cannot open what the new key sealed; the new key alone can.
    with pytest.raises(KeyRingError):
        KeyRing.parse(k1).open(new, AAD)
    assert KeyRing.parse(k2).open(new, AAD) == PLAIN


def test_spec_tolerates_spaces_and_empty_entries():
    k1, k2 = spec("k1"), spec("k2")
    ring = KeyRing.parse(f" {k1} ,, {k2} ,")
    assert ring.primary == "k1"
    assert ring.open(KeyRing.parse(k2).seal(PLAIN, AAD), AAD) == PLAIN


def test_unknown_key_id_is_a_key_ring_error():
    sealed = KeyRing.parse(spec("k1")).seal(PLAIN, AAD)
    with pytest.raises(KeyRingError, match="k1"):
        KeyRing.parse(spec("k9")).open(sealed, AAD)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        " , ,",
        "no-separator",
        ":" + base64.b64encode(os.urandom(32)).decode(),
        "k1:not base64!!",
        "k1:",
        spec("k1", os.urandom(16)),
        spec("k1", os.urandom(33)),
        f"{spec('k1')},{spec('k2', os.urandom(24))}",
        f"{spec('k1')},{spec('k1')}",
    ],
    ids=[
        "empty",
        "only-commas",
        "no-colon",
        "no-kid",
        "not-base64",
        "empty-key",
        "aes-128-size",
        "33-bytes",
        "second-key-bad",
        "duplicate-kid",
    ],
)
def test_malformed_specs_raise(bad):
    with pytest.raises(KeyRingError):
        KeyRing.parse(bad)


def test_error_never_shows_key_material():
    key = base64.b64encode(os.urandom(16)).decode()
    with pytest.raises(KeyRingError) as caught:
        KeyRing.parse(f"k1:{key}")
    assert key not in str(caught.value)


def test_production_without_keys_refuses(tmp_path):
    settings = Settings(
        env="production", encryption_keys=None, local_key_file=str(tmp_path / "k.key")
    )
    with pytest.raises(KeyRingError):
        load_key_ring(settings)
    assert not (tmp_path / "k.key").exists()


def test_configured_keys_win_over_the_local_file(tmp_path):
    k1 = spec("prod1")
    ring = load_key_ring(
        Settings(env="production", encryption_keys=k1, local_key_file=str(tmp_path / "k.key"))
    )
    assert ring.primary == "prod1"
    assert not (tmp_path / "k.key").exists()


def test_development_generates_and_keeps_a_private_local_key(tmp_path):
    path = tmp_path / "nested" / "encryption.key"
    settings = Settings(env="development", encryption_keys=None, local_key_file=str(path))
    first = load_key_ring(settings)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    sealed = first.seal(PLAIN, AAD)
    # A second start reads the same key instead of writing a new one.
    assert load_key_ring(settings).open(sealed, AAD) == PLAIN


def test_the_local_key_is_found_the_same_way_from_any_directory(tmp_path, monkeypatch):
    """A relative CONNXT_LOCAL_KEY_FILE is relative to the state directory, never to the
    working directory: ``connxt tenants create`` run from elsewhere finds the service's key."""
    state = tmp_path / "state"
    settings = Settings(
        env="development", encryption_keys=None, state_dir=str(state), local_key_file=None
    )
    fingerprints = set()
    for cwd in (tmp_path, tmp_path / "elsewhere"):
        cwd.mkdir(exist_ok=True)
        monkeypatch.chdir(cwd)
        fingerprints.add(load_key_ring(settings).fingerprint())
    assert len(fingerprints) == 1
    assert local_key_path(settings) == state / "encryption.key"
    relative = Settings(state_dir=str(state), local_key_file="keys/dev.key")
    assert local_key_path(relative) == state / "keys" / "dev.key"


def test_a_checkout_keeps_its_state_beside_its_code(monkeypatch):
    """Unset, the state directory of a source checkout is its own .connxt/, wherever the
    command runs; an installed package uses the user's state directory."""
    import connxt.state as state

    assert (
        state_dir(Settings(state_dir=None)) == Path(state.__file__).resolve().parents[1] / ".connxt"
    )
    monkeypatch.setattr(state, "_PACKAGE_ROOT", Path("/nonexistent/site-packages"))
    monkeypatch.setenv("XDG_STATE_HOME", "/var/lib/someone")
    assert state_dir(Settings(state_dir=None)) == Path("/var/lib/someone/connxt")


def test_a_secret_sealed_by_another_key_of_the_same_name_says_so():
    sealed = KeyRing.parse(spec("dev1")).seal(PLAIN, AAD)
    with pytest.raises(SecretUnreadable) as caught:
        KeyRing.parse(spec("dev1")).open(sealed, AAD)
    assert "another key" in str(caught.value)


@pytest.mark.parametrize("token", ["sec_abc", "sec_" + "x" * 40, "ünïcode"])
def test_hash_token_is_sha256_hex(token):
    assert hash_token(token) == hashlib.sha256(token.encode()).hexdigest()
    assert len(hash_token(token)) == 64


def test_production_api_refuses_to_start_without_keys(monkeypatch):
    import subprocess
    import sys

    env = {k: v for k, v in __import__("os").environ.items() if k != "CONNXT_ENCRYPTION_KEYS"}
    env["CONNXT_ENV"] = "production"
    started = subprocess.run(
        [sys.executable, "-c", "from api_gateway.app import create_app; create_app()"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode != 0
    assert "CONNXT_ENCRYPTION_KEYS must be set in production" in started.stderr
