"""Opaque page cursors: the parts of a position joined and base64-encoded. A cursor the
client made up or changed is a 400 naming ``cursor``, never a 500."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from api_gateway.errors import BadRequest, field_error


def encode(*parts: str) -> str:
    return base64.urlsafe_b64encode("|".join(parts).encode()).decode()


def decode(cursor: str, *readers: Callable[[str], Any]) -> tuple[Any, ...]:
    """The position ``cursor`` holds, each part read by its reader (which raises ValueError
    for a part it cannot read)."""
    try:
        parts = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        if len(parts) != len(readers):
            raise ValueError(cursor)
        return tuple(read(part) for read, part in zip(readers, parts, strict=True))
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("Validation failed", [field_error("cursor", "invalid cursor")]) from None
