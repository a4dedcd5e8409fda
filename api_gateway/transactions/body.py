"""Reading the Step 3 body in bounded time: Decimal amounts, bounded numbers and nesting,
text PostgreSQL can store.

Every number is read as Decimal straight from its text (the amount is never a float), and a
number no payment needs (more than ``MAX_DIGITS`` digits, or an exponent past
``MAX_EXPONENT``) is refused with a 400 naming its field: turning ``1e999999999`` into an
integer, or storing it, would take minutes of CPU on the event loop. Numbers inside
``executePayload`` are stored exactly as written, as JSON numbers.
"""

from __future__ import annotations

import json
import threading
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
from pydantic import ValidationError

from api_gateway.errors import BadRequest, field_error, field_path, not_json, too_deep
from api_gateway.transactions.schemas import TransactionCreate

# executePayload is free-form JSON, walked below (and by the schema validator and the
# connectors): bound its nesting well under the interpreter's recursion limit.
MAX_JSON_DEPTH = 64
# Far beyond any amount, quantity or id a payment carries, far below costly arithmetic.
MAX_DIGITS = 40
MAX_EXPONENT = 40


class _Unbounded(str):
    """A number literal past the bounds, kept as text so the walk can name its field."""


# Set by the parser's hooks when a number is out of bounds: the body then gets the walk
# that names the field. The event loop parses one body at a time, and threads have their own.
_seen = threading.local()


def _unbounded(text: str) -> _Unbounded:
    _seen.unbounded = True
    return _Unbounded(text)


def _number(text: str) -> Decimal | _Unbounded:
    if len(text) > MAX_DIGITS + 8:
        return _unbounded(text)
    try:
        value = Decimal(text)
    except InvalidOperation:  # not reachable for the parser's own literals
        return _unbounded(text)
    if len(value.as_tuple().digits) > MAX_DIGITS or abs(value.adjusted()) > MAX_EXPONENT:
        return _unbounded(text)
    return value


def _integer(text: str) -> int | Decimal | _Unbounded:
    if len(text) <= 18:
        return int(text)
    # Past 64 bits a Decimal, which is stored exactly as written.
    return Decimal(text) if len(text.lstrip("-")) <= MAX_DIGITS else _unbounded(text)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


# Built once: json.loads with hooks would build a decoder (and its scanner) per call.
_DECODER = json.JSONDecoder(parse_float=_number, parse_int=_integer, parse_constant=_no_constant)


def _needs_walk(raw: bytes) -> bool:
    """Whether the parsed body could hold anything the walk refuses. Nesting cannot exceed
    the number of brackets, and only a ``\\u`` escape can produce a lone surrogate or a
    NUL (raw control characters are not valid JSON): most bodies are cleared by three
    counts in C instead of a walk in Python."""
    return (
        getattr(_seen, "unbounded", False)
        or raw.count(b"{") + raw.count(b"[") > MAX_JSON_DEPTH
        or b"\\u" in raw
    )


def _json_problem(data: Any) -> dict[str, str] | None:
    """The first value that cannot be processed or stored: too deep, an unbounded number,
    or text that is not UTF-8.

    Iterative, so that it cannot itself run out of stack. A lone surrogate (``"\\ud800"``)
    is valid JSON but cannot be encoded for PostgreSQL, nor can a NUL character.
    """
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(data, ())]
    while stack:
        value, path = stack.pop()
        if len(path) > MAX_JSON_DEPTH:
            return field_error(field_path(path), f"nested deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(value, dict):
            for key, item in value.items():
                if not _storable(key):
                    return field_error(field_path(path), "a key is not valid Unicode text")
                stack.append((item, (*path, key)))
        elif isinstance(value, list):
            stack.extend((item, (*path, i)) for i, item in enumerate(value))
        elif isinstance(value, _Unbounded):
            return field_error(
                field_path(path),
                f"number out of range (at most {MAX_DIGITS} digits, exponent within "
                f"±{MAX_EXPONENT})",
            )
        elif isinstance(value, str) and not _storable(value):
            return field_error(field_path(path), "not valid Unicode text")
    return None


def _storable(text: str) -> bool:
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_body(raw: bytes) -> TransactionCreate:
    _seen.unbounded = False
    try:
        data = _DECODER.decode(raw.decode())
    except (ValueError, UnicodeDecodeError):
        raise not_json() from None
    except RecursionError:  # nesting deeper than the parser's own limit
        raise too_deep() from None
    if not isinstance(data, dict):
        raise BadRequest("Validation failed", [field_error("body", "must be a JSON object")])
    problem = _json_problem(data) if _needs_walk(raw) else None
    if problem is not None:
        raise BadRequest("Validation failed", [problem])
    try:
        return TransactionCreate.model_validate(data)
    except ValidationError as exc:
        raise BadRequest(
            "Validation failed",
            [
                field_error(".".join(str(p) for p in err["loc"]) or "body", err["msg"])
                for err in exc.errors()
            ],
        ) from None


def _exact(value: Any) -> Any:
    if isinstance(value, Decimal):
        return orjson.Fragment(str(value).encode())  # the number as written, not a float
    raise TypeError(f"{type(value).__name__} is not JSON")


def payload_json(payload: dict[str, Any]) -> str:
    """executePayload as JSON text for storage, every number exactly as the merchant sent it."""
    return orjson.dumps(payload, default=_exact).decode()
