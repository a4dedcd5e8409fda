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


def random_id(prefix: str, length: int = 26) -> str:
    return f"{prefix}_" + "".join(secrets.choice(_ALPHABET) for _ in range(length))


def ulid_id(prefix: str) -> str:
    return f"{prefix}_{str(ULID()).lower()}"


def new_token() -> str:
    """An API secret: 192 bits of entropy."""
    return "sec_" + secrets.token_urlsafe(24)
