"""`Idempotency-Key` on POST: the same key and body replays the first answer.

The key is claimed in its own committed transaction before any work, so a concurrent
request with the same key sees it: still without an answer → 409, another body → 422.
A request that fails unexpectedly releases its key so the client can retry.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert

from api_gateway.envelope import error_body
from api_gateway.errors import ApiError, BadRequest, Conflict, Unprocessable, field_error
from storage.db import session_scope
from storage.models import IdempotencyKey


@dataclass(frozen=True)
class Replay:
    status_code: int
    body: dict[str, Any]


def request_hash(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + body).hexdigest()


def claim(environment_id: str, key: str, digest: str) -> Replay | None:
    """Claim the key; a Replay when it already holds a finished answer."""
    if not key or len(key) > 255 or not key.isprintable():
        raise BadRequest(
            "Validation failed", [field_error("Idempotency-Key", "1 to 255 printable characters")]
        )
    with session_scope() as session:
        inserted = session.execute(
            insert(IdempotencyKey)
            .values(environment_id=environment_id, key=key, request_sha256=digest)
            .on_conflict_do_nothing()
            .returning(IdempotencyKey.key)
        ).first()
        if inserted:
            return None
        row = session.scalar(
            select(IdempotencyKey).where(
                IdempotencyKey.environment_id == environment_id, IdempotencyKey.key == key
            )
        )
    if row.request_sha256 != digest:
        raise Unprocessable("Idempotency-Key was already used with a different request")
    if row.response_code is None:
        raise Conflict("A request with this Idempotency-Key is still in progress")
    return Replay(row.response_code, row.response_body)


def remember(environment_id: str, key: str, status_code: int, body: dict[str, Any]) -> None:
    with session_scope() as session:
        session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.environment_id == environment_id, IdempotencyKey.key == key)
            .values(response_code=status_code, response_body=body)
        )


def release(environment_id: str, key: str) -> None:
    with session_scope() as session:
        session.execute(
            delete(IdempotencyKey).where(
                IdempotencyKey.environment_id == environment_id, IdempotencyKey.key == key
            )
        )


async def run_idempotent(
    key: str | None,
    environment_id: str,
    method: str,
    path: str,
    raw_body: bytes,
    produce: Callable[[], Awaitable[JSONResponse]],
) -> JSONResponse:
    """Answer a POST once per key: replay a finished answer, refuse a clash or a race."""
    if key is None:
        return await produce()
    digest = request_hash(method, path, raw_body)
    replay = await run_in_threadpool(claim, environment_id, key, digest)
    if replay is not None:
        return JSONResponse(replay.body, status_code=replay.status_code)
    try:
        response = await produce()
    except ApiError as exc:
        # A refused request is an answer too: the same key replays the same refusal.
        body = error_body(exc.status_code, exc.message, exc.errors)
        response = JSONResponse(body, status_code=exc.status_code)
    except BaseException:
        await run_in_threadpool(release, environment_id, key)
        raise
    await run_in_threadpool(
        remember, environment_id, key, response.status_code, json.loads(response.body)
    )
    return response
