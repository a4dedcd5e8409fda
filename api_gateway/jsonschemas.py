"""jsonschema validation with errors in the envelope's `{field, message}` form.

The hot path (every Step 3 body against its action's ``inputSchema``) asks jsonschema-rs
first: it answers "valid" in about a microsecond, where jsonschema takes ~200 µs, more
than the whole request may cost. Only a body it finds invalid goes through jsonschema,
whose errors name each field; jsonschema stays the judge of what an error says.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema_rs
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

_validators: dict[str, Draft202012Validator] = {}
# Fast validators by schema object: a catalog entry keeps its schema dict while cached, so
# identity is a fine key, and holding the dict here keeps its id from being reused.
_fast: dict[int, tuple[dict[str, Any], Any]] = {}
_FAST_MAX = 512


def _validator(schema: dict[str, Any]) -> Draft202012Validator:
    # Schemas come from the catalog and rarely change: compile each distinct one once.
    key = json.dumps(schema, sort_keys=True)
    validator = _validators.get(key)
    if validator is None:
        Draft202012Validator.check_schema(schema)
        validator = _validators[key] = Draft202012Validator(schema)
    return validator


def _fast_validator(schema: dict[str, Any]) -> Any:
    entry = _fast.get(id(schema))
    if entry is None or entry[0] is not schema:
        if len(_fast) >= _FAST_MAX:
            _fast.clear()
        entry = _fast[id(schema)] = (schema, jsonschema_rs.validator_for(schema))
    return entry[1]


def payload_errors(instance: Any, schema: dict[str, Any], prefix: str) -> list[dict[str, str]]:
    """As ``schema_errors``, fast when ``instance`` is valid (the common case)."""
    try:
        if _fast_validator(schema or {}).is_valid(instance):
            return []
    except (ValueError, jsonschema_rs.ValidationError):  # a schema jsonschema-rs cannot take
        pass
    return schema_errors(instance, schema, prefix)


def schema_errors(instance: Any, schema: dict[str, Any], prefix: str) -> list[dict[str, str]]:
    """Every violation of ``schema`` by ``instance``, each with a dotted field path."""
    try:
        validator = _validator(schema or {})
    except SchemaError:
        return [{"field": prefix, "message": "the catalog's schema for this field is invalid"}]
    errors = []
    for err in sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.path))):
        path = prefix + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.path)
        errors.append({"field": path, "message": _message(err)})
    return errors


def _message(err: Any) -> str:
    # Never echo the offending value: it may be a secret (a credential field).
    if err.validator == "required":
        missing = err.message.split("'")[1] if "'" in err.message else "a field"
        return f"'{missing}' is required"
    if err.validator == "additionalProperties":
        return "unexpected properties: " + ", ".join(
            sorted(set(err.instance) - set(err.schema.get("properties", {})))
        )
    if err.validator == "type":
        return f"must be of type {err.validator_value}"
    if err.validator == "enum":
        return f"must be one of {err.validator_value}"
    if err.validator in ("minLength", "maxLength", "minimum", "maximum", "pattern", "format"):
        return f"violates {err.validator} {err.validator_value}"
    return f"violates {err.validator}"
