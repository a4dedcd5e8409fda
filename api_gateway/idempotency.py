"""`Idempotency-Key` on POST: the same key and body replays the first answer.

The key's row is written in the *same* database transaction as what the request creates
(`link_resource`), so a key can never point at nothing, and a resource is never created
twice for one key: the unique key decides between two racing requests, the loser's work
rolls back and it answers with the winner's resource. An answer lost after that commit
(the database went away first) is rebuilt from the resource on retry.

While a request runs, a short-lived Redis marker makes a second request with the same
key a 409 instead of a wait. If Redis is down the marker is skipped: correctness rests
on the database alone.
"""

from __future__ import annotations

import contextvars
import hashlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import redis
import structlog
from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from api_gateway.envelope import error_body
from api_gateway.errors import ApiError, BadRequest, Conflict, Unprocessable, field_error
from connxt.redis import get_async_redis
from storage import idempotency as keys
from storage.db import session_scope
from storage.idempotency import Found, KeyUse
from storage.transaction_writer import IdempotencyRow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

log = structlog.get_logger()

IN_FLIGHT_SECONDS = 60  # longer than any request may run


_current: contextvars.ContextVar[KeyUse | None] = contextvars.ContextVar(
    "idempotency_claim", default=None
)


class KeyTaken(Exception):
    """A concurrent request with the same key committed first."""


def request_hash(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + body).hexdigest()


def _check_key(key: str) -> None:
    if not key or len(key) > 255 or not key.isprintable():
        raise BadRequest(
            "Validation failed", [field_error("Idempotency-Key", "1 to 255 printable characters")]
        )


def find(environment_id: str, key: str) -> Found | None:
    with session_scope() as session:
        return keys.find(session, environment_id, key)


def current_row(
    response_code: int | None = None, response_body: str | None = None
) -> IdempotencyRow | None:
    """The running request's key as a row to store with what it creates (None: no key).

    An answer known before the commit (a 202) is stored with it, so it needs no write of
    its own afterwards; the caller then marks the response ``remembered``.
    """
    claim = _current.get()
    if claim is None:
        return None
    return IdempotencyRow(claim.key, claim.digest, response_code, response_body)


def link_resource(session: Session, resource_id: str) -> None:
    """Inside the creating transaction: bind the key to what this request created."""
    claim = _current.get()
    if claim is not None and not keys.link_resource(session, claim, resource_id):
        raise KeyTaken(claim.key)  # the caller's transaction rolls back: nothing is created


def remember_refusal(claim: KeyUse, status_code: int, body: dict[str, Any]) -> None:
    with session_scope() as session:
        keys.store_refusal(session, claim, status_code, body)


def remember(claim: KeyUse, status_code: int, raw_body: bytes) -> None:
    with session_scope() as session:
        keys.store_answer(session, claim, status_code, raw_body)


def _marker(claim: KeyUse) -> str:
    return f"idem:{claim.environment_id}:{hashlib.sha256(claim.key.encode()).hexdigest()}"


async def _mark_in_flight(claim: KeyUse) -> bool:
    try:
        return bool(await get_async_redis().set(_marker(claim), "1", nx=True, ex=IN_FLIGHT_SECONDS))
    except redis.RedisError:
        return True  # no marker without Redis; the database still decides


async def _clear_in_flight(claim: KeyUse) -> None:
    try:
        await get_async_redis().delete(_marker(claim))
    except redis.RedisError:
        pass  # it expires by itself


async def _quietly(what: str, func: Callable[..., None], *args: Any) -> None:
    # Storing the answer is bookkeeping: if it fails the answer still goes out, and a
    # retry rebuilds it from the linked resource.
    try:
        await run_in_threadpool(func, *args)
    except Exception as exc:
        log.warning("idempotency.bookkeeping_failed", step=what, error=type(exc).__name__)


async def post_once(
    request: Request,
    environment_id: str,
    key: str | None,
    create: Callable[[], Response],
    read: Callable[[str], Response],
) -> Response:
    """``run_idempotent`` for a POST whose creating and reading block (each runs on the
    thread pool): the route's path and body are the request's."""
    return await run_idempotent(
        key,
        environment_id,
        "POST",
        request.url.path,
        await request.body(),
        lambda: run_in_threadpool(create),
        lambda resource_id: run_in_threadpool(read, resource_id),
    )


async def _earlier(claim: KeyUse, resume: Callable[[str], Awaitable[Response]]) -> Response | None:
    """The answer owed for an earlier request with this key, if there was one."""
    found = await run_in_threadpool(find, claim.environment_id, claim.key)
    if found is None:
        return None
    if found.digest != claim.digest:
        raise Unprocessable("Idempotency-Key was already used with a different request")
    if found.response_code is not None:
        return Response(
            (found.response_body or "null").encode(),
            status_code=found.response_code,
            media_type="application/json",
        )
    # Every writer of a key's row gives it an answer or a resource (storage.idempotency,
    # storage.transaction_writer), and redaction clears only the answer of a resource's.
    assert found.resource_id is not None
    return await resume(found.resource_id)


async def run_idempotent(
    key: str | None,
    environment_id: str,
    method: str,
    path: str,
    raw_body: bytes,
    produce: Callable[[], Awaitable[Response]],
    resume: Callable[[str], Awaitable[Response]],
    *,
    look_first: bool = True,
) -> Response:
    """Answer a POST once per key: replay, rebuild from the resource, or refuse a clash.

    ``look_first=False`` skips reading the key before producing: for a producer that stores
    the key with what it creates (the group commit), an earlier use shows up as KeyTaken,
    which saves a round trip on every fresh key. A refusal then still looks first, so it
    never shadows an earlier answer under the same key.
    """
    if key is None:
        return await produce()
    _check_key(key)
    claim = KeyUse(environment_id, key, request_hash(method, path, raw_body))
    if not await _mark_in_flight(claim):
        found = await run_in_threadpool(find, environment_id, key)
        if found is not None and found.digest != claim.digest:
            raise Unprocessable("Idempotency-Key was already used with a different request")
        raise Conflict("A request with this Idempotency-Key is still in progress")
    try:
        if look_first:
            earlier = await _earlier(claim, resume)
            if earlier is not None:
                return earlier
        token = _current.set(claim)
        try:
            response = await produce()
        except KeyTaken:
            winner = await _earlier(claim, resume)  # the racing request won: its answer
            if winner is None:
                raise Conflict("A request with this Idempotency-Key is still in progress") from None
            return winner
        except ApiError as exc:
            if exc.status_code >= 500:
                raise  # not an answer to the request: a retry must try again
            if not look_first:
                earlier = await _earlier(claim, resume)
                if earlier is not None:
                    return earlier
            # A refused request is an answer too: the same key replays the same refusal.
            body = error_body(exc.status_code, exc.message, exc.errors)
            await _quietly("remember_refusal", remember_refusal, claim, exc.status_code, body)
            return JSONResponse(body, status_code=exc.status_code)
        finally:
            _current.reset(token)
        if not getattr(response, "remembered", False):
            await _quietly("remember", remember, claim, response.status_code, bytes(response.body))
        return response
    finally:
        await _clear_in_flight(claim)
