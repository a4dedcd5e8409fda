"""Reading the Step 3 body: Decimal amounts, bounded nesting, text PostgreSQL can store."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from api_gateway.errors import BadRequest, field_error, field_path
from api_gateway.transactions.schemas import TransactionCreate


def _plain_numbers(value: Any) -> Any:
    """executePayload is stored as JSON: Decimals become ints or floats again."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_numbers(v) for v in value]
    return value


# executePayload is free-form JSON, walked recursively below (and by the schema validator
# and the connectors): bound its nesting well under the interpreter's recursion limit.
MAX_JSON_DEPTH = 64


def _json_problem(data: Any) -> dict[str, str] | None:
    """The first value that cannot be processed or stored: too deep, or not UTF-8 text.

    Iterative, so that it cannot itself run out of stack. A lone surrogate (``"\\ud800"``)
    is valid JSON but cannot be encoded for PostgreSQL.
    """
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(data, ())]
    while stack:
        value, path = stack.pop()
        if len(path) > MAX_JSON_DEPTH:
            return field_error(field_path(path), f"nested deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(value, dict):
            for key, item in value.items():
                if not _is_utf8(key):
                    return field_error(field_path(path), "a key is not valid Unicode text")
                stack.append((item, (*path, key)))
        elif isinstance(value, list):
            stack.extend((item, (*path, i)) for i, item in enumerate(value))
        elif isinstance(value, str) and not _is_utf8(value):
            return field_error(field_path(path), "not valid Unicode text")
    return None


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_body(raw: bytes) -> TransactionCreate:
    try:
        # Non-integers become Decimal at parse time: the amount is never a float.
        data = json.loads(raw, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("Validation failed", [field_error("body", "not valid JSON")]) from None
    except RecursionError:  # nesting deeper than the parser's own limit
        raise BadRequest(
            "Validation failed",
            [field_error("body", f"nested deeper than {MAX_JSON_DEPTH} levels")],
        ) from None
    if not isinstance(data, dict):
        raise BadRequest("Validation failed", [field_error("body", "must be a JSON object")])
    problem = _json_problem(data)
    if problem is not None:
        raise BadRequest("Validation failed", [problem])
    try:
        body = TransactionCreate.model_validate(data)
    except ValidationError as exc:
        raise BadRequest(
            "Validation failed",
            [
                field_error(".".join(str(p) for p in err["loc"]) or "body", err["msg"])
                for err in exc.errors()
            ],
        ) from None
    body.executePayload = _plain_numbers(body.executePayload)
    return body
