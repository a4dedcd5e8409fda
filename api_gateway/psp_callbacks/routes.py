"""PSP-facing HTTP, without a token: webhooks, browser redirects, our own result page.

The customer's browser never reaches the merchant's success page before the outcome is
known: until then it goes to the merchant's return page or waits on our result page.
"""

from __future__ import annotations

import html

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse

from api_gateway.envelope import ok
from api_gateway.errors import NotFound, Unavailable
from api_gateway.hot_paths import hot_route, read_body
from api_gateway.openapi import answers
from api_gateway.psp_callbacks import service
from api_gateway.psp_callbacks.schemas import WebhookReceived
from api_gateway.runtime import runtime
from connxt import tasks
from connxt.metrics import WEBHOOKS
from state_machine import Status
from storage.catalog import cached_target
from storage.db import session_scope
from storage.group_commit import StoreUnavailable
from storage.inbox_writer import Outcome
from storage.inquiries import request_inquiry
from storage.transactions import get_in_scope, is_open

router = APIRouter(tags=["External (PSP-facing)"])


@router.post(
    "/external/webhooks/{psp_id}",
    summary="A PSP's notification",
    responses=answers(
        400,
        401,
        404,
        413,
        503,
        data=WebhookReceived,
        token=False,
        ok="Stored (or a duplicate of one stored before)",
        e400="Not a notification this PSP sends",
        e401="The signature does not verify",
        e404="No such PSP",
    ),
)
@hot_route  # taken before the router (api_gateway.hot_paths)
async def psp_webhook(psp_id: str, request: Request):
    body = await read_body(request)
    headers = {k.lower(): v for k, v in request.headers.items()}
    webhook = await service.read_webhook(psp_id, headers, body)
    try:
        received = await runtime(request).webhooks.submit(webhook)
    except StoreUnavailable:
        raise Unavailable("Database unavailable, retry shortly") from None
    WEBHOOKS.labels(received.outcome.value).inc()
    return ok(
        {"received": True, "duplicate": received.outcome is Outcome.DUPLICATE},
        message="Notification received",
    )


def _redirect_target(txn_id: str, fallback: str) -> str:
    with session_scope() as session:
        txn = get_in_scope(session, None, txn_id)  # no token: the id alone finds it
        if txn is None:
            raise NotFound("Transaction not found")
        target = service.merchant_return_url(session, txn, fallback)
        if is_open(txn):
            # Never trusted on its own: the PSP is asked (the task leaves at commit), at
            # most once per window however often the browser comes back.
            found = cached_target(session, txn.flow_target_id)
            assert found is not None  # a foreign key names it; flow targets are never deleted
            connector = found.name
            request_inquiry(session, txn_id, tasks.psp_queue(connector))
    return target


async def _redirect(txn_id: str, request: Request) -> RedirectResponse:
    fallback = str(request.url_for("result_page", txn_id=txn_id))
    target = await run_in_threadpool(_redirect_target, txn_id, fallback)
    return RedirectResponse(target, status_code=303)


_REDIRECT_ANSWERS = {
    303: {
        "description": "To the merchant's page for the outcome once it is known; before that "
        "to its `returnUrl`, or to Connxt's result page",
        "headers": {"Location": {"schema": {"type": "string"}}},
    },
    **answers(400, 404, 503, e404="No such transaction"),
}
_SEE_OTHER = "See other (Location)"


@router.get(
    "/external/redirects/{txn_id}",
    summary="The customer coming back (GET)",
    status_code=303,
    response_class=RedirectResponse,
    response_description=_SEE_OTHER,
    responses=_REDIRECT_ANSWERS,
)
async def customer_redirect_get(txn_id: str, request: Request):
    return await _redirect(txn_id, request)


@router.post(
    "/external/redirects/{txn_id}",
    summary="The customer coming back (form POST)",
    status_code=303,
    response_class=RedirectResponse,
    response_description=_SEE_OTHER,
    responses={**_REDIRECT_ANSWERS, **answers(413)},
)
async def customer_redirect_post(txn_id: str, request: Request):
    return await _redirect(txn_id, request)


_OUTCOME_WORDS = {
    Status.SUCCESS.value: "Payment received",
    Status.FAILED.value: "Payment failed",
    Status.REJECTED.value: "Payment declined",
}


@router.get("/external/result/{txn_id}", include_in_schema=False, name="result_page")
def result_page(txn_id: str, request: Request):
    """Where a customer waits for the outcome: "processing" and a refresh until it is
    known, then on to the merchant's success or failure page (or the outcome, here)."""
    here = str(request.url_for("result_page", txn_id=txn_id))
    with session_scope() as session:
        txn = get_in_scope(session, None, txn_id)  # no token: the id alone finds it
        if txn is None:
            raise NotFound("Transaction not found")
        status, done = txn.status, not is_open(txn)
        target = service.merchant_return_url(session, txn, here) if done else here
    if target != here:
        return RedirectResponse(target, status_code=303)
    if done:
        heading, refresh = _OUTCOME_WORDS[status], ""
    else:
        heading, refresh = "Processing your payment", '<meta http-equiv="refresh" content="3">'
    note = "" if done else "<p>This page moves on by itself once the payment is decided.</p>"
    return HTMLResponse(
        f"<!doctype html><html><head><title>Connxt</title>{refresh}</head><body>"
        f"<h1>{html.escape(heading)}</h1><p>Reference {html.escape(txn_id)}: "
        f"{html.escape(status)}</p>{note}</body></html>",
        headers={"Cache-Control": "no-store"},
    )
