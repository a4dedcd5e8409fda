"""Every answer a test receives is checked against the OpenAPI document.

The document (``/openapi.json``) is what a client generates its code from, so every JSON
answer the suite sees, from the in-process app or the running API, must be one the document
lists for its operation, with a body that matches the schema it gives for that code. The
hot paths write their answers without FastAPI's serializer: this is what keeps their shapes
and the declared response models (api_gateway/*/schemas.py) from drifting apart.

Answers that are not JSON (the customer redirects' 303, the result page, /metrics) and
paths the document does not hold (probes of unknown routes) are left to their own tests.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import httpx
from jsonschema import Draft202012Validator


@functools.cache
def document() -> dict[str, Any]:
    from api_gateway.app import create_app

    return create_app().openapi()


@functools.cache
def _operations() -> dict[tuple[str, re.Pattern[str]], dict[str, Any]]:
    """(method, path pattern) → the operation; ``{txn_id}`` matches one path segment."""
    found = {}
    for path, item in document()["paths"].items():
        pattern = re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(path)) + "$")
        for method, operation in item.items():
            found[(method.upper(), pattern)] = operation
    return found


def _operation(method: str, path: str) -> tuple[str, re.Pattern[str]] | None:
    return next((key for key in _operations() if key[0] == method and key[1].match(path)), None)


@functools.cache
def _validator(operation: tuple[str, re.Pattern[str]], status: str) -> Draft202012Validator | None:
    answers = _operations()[operation]["responses"]
    answer = answers.get(status)
    if answer is None:
        raise AssertionError(
            f"{operation[0]} {operation[1].pattern} answered {status}, which the document "
            f"does not list (it lists {sorted(answers)})"
        )
    schema = answer.get("content", {}).get("application/json", {}).get("schema")
    if schema is None:
        return None
    # The answer's schema with the document's components beside it, so that its
    # "#/components/schemas/..." references resolve as they do in the document.
    return Draft202012Validator({**schema, "components": document()["components"]})


def check(response: httpx.Response) -> None:
    """An httpx response hook: raise when the answer is not the one the document gives."""
    request = response.request
    content_type = response.headers.get("content-type", "")
    if not content_type.startswith("application/json"):
        return
    path = request.url.path
    operation = _operation(request.method, path)
    if operation is None:
        return
    validator = _validator(operation, str(response.status_code))
    if validator is None:
        return
    response.read()
    problems = sorted(validator.iter_errors(response.json()), key=lambda e: list(e.path))
    if problems:
        lines = [
            f"{'/'.join(map(str, p.absolute_path)) or '(body)'}: {p.message[:300]}"
            for p in problems[:5]
        ]
        raise AssertionError(
            f"{request.method} {path} -> {response.status_code} does not match the document:\n  "
            + "\n  ".join(lines)
        )


def checked(client: httpx.Client) -> httpx.Client:
    """The client, with every answer checked against the document."""
    hooks = client.event_hooks
    client.event_hooks = {**hooks, "response": [*hooks["response"], check]}
    return client
