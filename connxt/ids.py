"""Prefixed, random identifiers.

Tenant and resource ids (`brn_`, `env_`, `psp_`, `txn_`) are 26 random base62 characters:
unguessable, so an id never leaks how many of anything exist. Catalog ids (`ftg_`, `fat_`,
`fld_`, `ftp_`) are lowercase ULIDs, as the reference shows them.
"""

from __future__ import annotations

import secrets
import string

from ulid import ULID

_ALPHABET = string.ascii_letters + string.digits


# Each random byte below 248 (= 4 * 62) maps to one character, the rest are dropped: every
# character equally likely, and the work done in C (translate) rather than per character.
_BYTE_TO_CHAR = bytes(ord(_ALPHABET[b % 62]) if b < 248 else 0 for b in range(256))
_DROPPED = bytes(range(248, 256))


def random_id(prefix: str, length: int = 26) -> str:
    chars = b""
    while len(chars) < length:
        chars += secrets.token_bytes(length + 8).translate(_BYTE_TO_CHAR, _DROPPED)
    return f"{prefix}_" + chars[:length].decode()


def ulid_id(prefix: str) -> str:
    return f"{prefix}_{str(ULID()).lower()}"


def new_token() -> str:
    """An API secret: 192 bits of entropy."""
    return "sec_" + secrets.token_urlsafe(24)
