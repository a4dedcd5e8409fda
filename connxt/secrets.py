"""Encryption of PSP credentials at rest and hashing of API tokens.

Credentials are sealed with AES-256-GCM under a key ring: every ciphertext carries the id of
the key that sealed it, the first key of the ring seals new ones, and any key of the ring
opens old ones — so keys rotate without a flag day. The brand/environment/PSP id is bound as
associated data, so a ciphertext copied onto another PSP row does not open.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from connxt.settings import Settings
from connxt.state import local_key_path


class KeyRingError(RuntimeError):
    """The key ring is missing or malformed."""


class UnknownKey(KeyRingError):
    """A sealed value names a key id the ring does not have."""


class SecretUnreadable(KeyRingError):
    """A sealed value does not open with the ring's key of its id: it was sealed by another
    key under the same id (a second development key), or copied from another row."""


@dataclass(frozen=True)
class Sealed:
    key_id: str
    blob: bytes  # nonce (12 bytes) + ciphertext + tag


class KeyRing:
    def __init__(self, keys: dict[str, bytes], primary: str):
        for kid, key in keys.items():
            if len(key) != 32:
                raise KeyRingError(f"key {kid!r} must be 32 bytes (AES-256)")
        self._keys = keys
        self.primary = primary

    @classmethod
    def parse(cls, spec: str) -> KeyRing:
        keys: dict[str, bytes] = {}
        order: list[str] = []
        for item in filter(None, (part.strip() for part in spec.split(","))):
            kid, sep, b64 = item.partition(":")
            if not sep or not kid:
                raise KeyRingError("CONNXT_ENCRYPTION_KEYS entries look like kid:base64key")
            if kid in keys:
                # One id, two keys: the ring would seal with one and label it as the other.
                raise KeyRingError(f"key {kid!r} appears more than once")
            try:
                keys[kid] = base64.b64decode(b64, validate=True)
            except ValueError as exc:
                raise KeyRingError(f"key {kid!r} is not valid base64") from exc
            order.append(kid)
        if not order:
            raise KeyRingError("CONNXT_ENCRYPTION_KEYS is empty")
        return cls(keys, order[0])

    def seal(self, plaintext: bytes, associated: bytes) -> Sealed:
        nonce = os.urandom(12)
        blob = nonce + AESGCM(self._keys[self.primary]).encrypt(nonce, plaintext, associated)
        return Sealed(self.primary, blob)

    def open(self, sealed: Sealed, associated: bytes) -> bytes:
        key = self._keys.get(sealed.key_id)
        if key is None:
            raise UnknownKey(f"no key {sealed.key_id!r} in the ring")
        try:
            return AESGCM(key).decrypt(sealed.blob[:12], sealed.blob[12:], associated)
        except InvalidTag:
            raise SecretUnreadable(
                f"a secret sealed under key {sealed.key_id!r} ({associated.decode()}) does not "
                f"open with this process's key {sealed.key_id!r} ({self.fingerprint()}): "
                "it was sealed by another key of that name"
            ) from None

    def fingerprint(self) -> str:
        """A short public name for the sealing key (8 hex digits of its SHA-256): tells two
        keys apart, reveals nothing of either."""
        return hashlib.sha256(self._keys[self.primary]).hexdigest()[:8]


def generate_key_spec(kid: str = "k1") -> str:
    return f"{kid}:{base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()}"


def load_key_ring(settings: Settings) -> KeyRing:
    """The configured ring; development generates and keeps a local key, production refuses."""
    if settings.encryption_keys:
        return KeyRing.parse(settings.encryption_keys)
    if settings.is_production:
        raise KeyRingError("CONNXT_ENCRYPTION_KEYS must be set in production")
    path = local_key_path(settings)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Exclusive create: two processes starting at once must not write two keys.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(generate_key_spec("dev1"))
    return KeyRing.parse(path.read_text().strip())


def key_mismatch_message(settings: Settings) -> str:
    """What to say when the ring cannot open what the database holds: the cause and the
    ways out, in one sentence (never a raw InvalidTag traceback)."""
    database = settings.database_url.rsplit("/", 1)[-1].split("?", 1)[0]
    source = "CONNXT_ENCRYPTION_KEYS" if settings.encryption_keys else local_key_path(settings)
    return (
        f"The database {database!r} holds secrets sealed with another encryption key than "
        f"this one ({source}), as happens in a second checkout or after .connxt/ was lost: "
        "restore the key that sealed them (CONNXT_STATE_DIR or CONNXT_ENCRYPTION_KEYS), or "
        "use another database with CONNXT_DB_NAME."
    )


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


_ring: KeyRing | None = None


def key_ring() -> KeyRing:
    """The process's key ring, loaded once from settings."""
    global _ring
    if _ring is None:
        from connxt.settings import get_settings

        _ring = load_key_ring(get_settings())
    return _ring
