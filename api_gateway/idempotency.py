"""`Idempotency-Key` on POST: the same key and body replays the first answer.

The key is claimed in its own committed transaction before any work, so a concurrent
request with the same key sees it: still without an answer → 409, another body → 422.
The resource a request creates is linked to its key in the same database transaction, so
an answer lost after that commit (the database went away before the answer was stored)
is rebuilt from the resource on retry, never created twice. A claim that never got as
far as creating anything is released, or taken over once it is clearly abandoned.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from api_gateway.envelope import error_body
from api_gateway.errors import ApiError, BadRequest, Conflict, Unprocessable, field_error
from storage.db import session_scope
from storage.models import IdempotencyKey

log = structlog.get_logger()

# A claim with no answer and nothing created after this long belongs to a dead request.
ABANDONED_AFTER = timedelta(seconds=60)

_current: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar(
    "idempotency_claim", default=None
)


@dataclass(frozen=True)
class Replay:
    status_code: int
    body: dict[str, Any]


@dataclass(frozen=True)
class Resume:
    """The first request created ``resource_id`` but its answer was never stored."""

    resource_id: str


def request_hash(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + body).hexdigest()


def _check_key(key: str) -> None:
    if not key or len(key) > 255 or not key.isprintable():
        raise BadRequest(
            "Validation failed", [field_error("Idempotency-Key", "1 to 255 printable characters")]
        )


def _where(environment_id: str, key: str):
    return (IdempotencyKey.environment_id == environment_id, IdempotencyKey.key == key)


def claim(environment_id: str, key: str, digest: str) -> Replay | Resume | None:
    """None when this request now owns the key; otherwise what to answer instead."""
    _check_key(key)
    with session_scope() as session:
        inserted = session.execute(
            insert(IdempotencyKey)
            .values(environment_id=environment_id, key=key, request_sha256=digest)
            .on_conflict_do_nothing()
            .returning(IdempotencyKey.key)
        ).first()
        if inserted:
            return None
        row = session.scalar(select(IdempotencyKey).where(*_where(environment_id, key)))
        if row.request_sha256 != digest:
            raise Unprocessable("Idempotency-Key was already used with a different request")
        if row.response_code is not None:
            return Replay(row.response_code, row.response_body)
        if row.resource_id is not None:
            return Resume(row.resource_id)
        taken_over = session.execute(
            update(IdempotencyKey)
            .where(
                *_where(environment_id, key),
                IdempotencyKey.response_code.is_(None),
                IdempotencyKey.resource_id.is_(None),
                IdempotencyKey.created_at < datetime.now(UTC) - ABANDONED_AFTER,
            )
            .values(created_at=datetime.now(UTC))
            .returning(IdempotencyKey.key)
        ).first()
    if taken_over:
        return None
    raise Conflict("A request with this Idempotency-Key is still in progress")


def link_resource(session: Session, resource_id: str) -> None:
    """Tie what the current request creates to its key, inside the creating transaction."""
    claimed = _current.get()
    if claimed is not None:
        session.execute(
            update(IdempotencyKey).where(*_where(*claimed)).values(resource_id=resource_id)
        )


def remember(environment_id: str, key: str, status_code: int, body: dict[str, Any]) -> None:
    with session_scope() as session:
        session.execute(
            update(IdempotencyKey)
            .where(*_where(environment_id, key))
            .values(response_code=status_code, response_body=body)
        )


def release(environment_id: str, key: str) -> None:
    """Free the key of a request that failed before creating anything."""
    with session_scope() as session:
        session.execute(
            delete(IdempotencyKey).where(
                *_where(environment_id, key), IdempotencyKey.resource_id.is_(None)
            )
        )


async def _quietly(what: str, func: Callable[..., None], *args: Any) -> None:
    # Bookkeeping after the fact must not turn an answer into an error: a key left
    # unanswered resumes from its resource or is taken over once abandoned.
    try:
        await run_in_threadpool(func, *args)
    except Exception as exc:  # noqa: BLE001
        log.warning("idempotency.bookkeeping_failed", step=what, error=type(exc).__name__)


async def run_idempotent(
    key: str | None,
    environment_id: str,
    method: str,
    path: str,
    raw_body: bytes,
    produce: Callable[[], Awaitable[JSONResponse]],
    resume: Callable[[str], Awaitable[JSONResponse]],
) -> JSONResponse:
    """Answer a POST once per key: replay, rebuild from the resource, or refuse a clash."""
    if key is None:
        return await produce()
    digest = request_hash(method, path, raw_body)
    found = await run_in_threadpool(claim, environment_id, key, digest)
    if isinstance(found, Replay):
        return JSONResponse(found.body, status_code=found.status_code)
    if isinstance(found, Resume):
        return await resume(found.resource_id)
    token = _current.set((environment_id, key))
    try:
        response = await produce()
    except ApiError as exc:
        # A refused request is an answer too: the same key replays the same refusal.
        body = error_body(exc.status_code, exc.message, exc.errors)
        response = JSONResponse(body, status_code=exc.status_code)
    except BaseException:
        await _quietly("release", release, environment_id, key)
        raise
    finally:
        _current.reset(token)
    await _quietly(
        "remember", remember, environment_id, key, response.status_code, json.loads(response.body)
    )
    return response
