"""Step 3 on the hot path: validate in memory, store by group commit, wait, answer.

A deposit or withdrawal costs the ingress no thread hop and no query of its own when its
token and PSP are cached: it rides in a shared INSERT (storage.transaction_writer) and is
answered only after that INSERT committed. `Prefer: respond-async` is then answered 202 at
once; otherwise the request waits (bounded) for the worker's wake-up and answers from the
row. A refund locks its parent, so it goes through its own database transaction in a
worker thread (service.create_refund).
"""

from __future__ import annotations

import dataclasses
import time
from types import SimpleNamespace
from typing import Any

from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from api_gateway import idempotency
from api_gateway.auth import Tenant
from api_gateway.envelope import envelope_json, ok
from api_gateway.errors import Unavailable
from api_gateway.psps.cache import psp_for_transaction
from api_gateway.runtime import Runtime
from api_gateway.transactions import service
from api_gateway.transactions.answers import ACCEPTED_MESSAGE, is_decided, step3_answer
from api_gateway.transactions.body import parse_body
from api_gateway.transactions.schemas import TransactionCreate
from connxt import tracing
from connxt.handoff import Waiter
from connxt.ids import random_id
from connxt.metrics import TRANSITIONS
from connxt.settings import get_settings
from state_machine import Source, Status
from storage.db import session_scope
from storage.group_commit import StoreUnavailable
from storage.transaction_view import read_for_answer
from storage.transaction_writer import Stored

_CREATED_COUNT = TRANSITIONS.labels(Status.CREATED.value, Source.API.value)


class StoredAnswer(Response):
    """An answer stored with its Idempotency-Key in the commit that created the resource:
    nothing is left to remember afterwards."""

    remembered = True


def _accepted(txn_id: str, status: str) -> bytes:
    return envelope_json(
        {"txnId": txn_id, "status": status}, ACCEPTED_MESSAGE.format(txnId=txn_id), 202
    )


async def create(runtime: Runtime, tenant: Tenant, raw: bytes, respond_async: bool) -> Response:
    """Validate, store and answer one Step 3 request (the producer for run_idempotent)."""
    body = parse_body(raw)
    psp, target = await psp_for_transaction(tenant, body.pspId)
    action = service.check_request(body, psp, target)
    if action.name == "REFUND":
        txn_id = await run_in_threadpool(_create_refund, tenant, body)
        return await answer(runtime, txn_id, respond_async, wait=not respond_async)
    assert psp is not None
    txn_id = random_id("txn")
    # A 202 is known before the commit, so it is stored with the key in the same INSERT.
    accepted = _accepted(txn_id, Status.CREATED.value) if respond_async else None
    key = idempotency.current_row(
        202 if accepted else None, accepted.decode() if accepted else None
    )
    assert target is not None
    txn = service.new_transaction(tenant, body, psp, target.name, action, key, txn_id)
    if tracing.enabled():
        txn = dataclasses.replace(txn, traceparent=tracing.current_traceparent())
    # Registered before the commit, so the worker's signal cannot come before it.
    waiter = None if respond_async else runtime.outcomes.expect(txn_id)
    try:
        try:
            stored = await runtime.transactions.submit(txn)
        except StoreUnavailable:
            raise Unavailable("Database unavailable, retry shortly") from None
        if stored is Stored.KEY_TAKEN:
            raise idempotency.KeyTaken(key.key if key else txn_id)
        _CREATED_COUNT.inc()
        if accepted is not None:
            return StoredAnswer(accepted, status_code=202, media_type="application/json")
        assert waiter is not None
        return await _answer_when_decided(runtime, txn_id, waiter, look_first=False)
    finally:
        if waiter is not None:
            runtime.outcomes.forget(txn_id)


def _create_refund(tenant: Tenant, body: TransactionCreate) -> str:
    with session_scope() as session:
        return service.create_refund(session, tenant, body)


async def answer(
    runtime: Runtime, txn_id: str, respond_async: bool, wait: bool = False
) -> Response:
    """The answer for a stored transaction: a refund after its commit, or the answer rebuilt
    for a retry (same Idempotency-Key) whose first answer was lost."""
    if not wait:
        txn = await _read(runtime, txn_id)
        return _respond(txn, txn_id, respond_async)
    waiter = runtime.outcomes.expect(txn_id)
    try:
        return await _answer_when_decided(runtime, txn_id, waiter, look_first=True)
    finally:
        runtime.outcomes.forget(txn_id)


async def _answer_when_decided(
    runtime: Runtime, txn_id: str, waiter: Waiter, look_first: bool
) -> Response:
    """Wait until the worker has made its attempt or the bound passes, and answer from the
    row (an attempt that ended without an outcome, a PSP 5xx say, is answered 202 at once).
    ``waiter`` was registered before anything could signal it; a wake-up that is not the
    worker's signal (the subscription was re-established) only makes it look again."""
    deadline = time.monotonic() + get_settings().initiation_wait_seconds
    while True:
        if not look_first:
            await runtime.outcomes.wait(waiter, deadline - time.monotonic())
        look_first = False
        txn = await _read(runtime, txn_id)
        if txn is None or waiter.signalled or is_decided(txn) or time.monotonic() >= deadline:
            return _respond(txn, txn_id, respond_async=False)


async def _read(runtime: Runtime, txn_id: str) -> SimpleNamespace | None:
    """The row, or None when the database cannot be read right now."""
    try:
        return await read_for_answer(runtime.pool, txn_id)
    except Exception:  # any failure to read: the caller answers 202
        return None


def _respond(txn: Any, txn_id: str, respond_async: bool) -> Response:
    if txn is None:
        # Committed, then the database went away: the transaction exists and will be
        # initiated, so say so (a 503 here would invite a retry that pays twice).
        return Response(
            _accepted(txn_id, Status.CREATED.value), status_code=202, media_type="application/json"
        )
    code, message, data = step3_answer(txn, respond_async)
    return ok(data, message=message, status_code=code)
