"""HTTP for the console's pages: sign-in, transactions, parked work, PSP health, the audit
trail."""

from __future__ import annotations

import dataclasses
from datetime import date

import structlog
from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from console import service
from console.actions import actor
from console.auth import Viewer, sign_in, viewer_of
from console.render import SignInRequired, check_csrf, render, safe_next
from console.session import current, forget, remember
from storage import audit
from storage.db import session_scope

log = structlog.get_logger()
router = APIRouter()


def signed_in(request: Request) -> Viewer:
    """The viewer, or a trip to the sign-in page (and back here afterwards)."""
    session = current(request)
    viewer = viewer_of(session) if session.signed_in else None
    if viewer is None:
        raise SignInRequired(request.url.path)
    request.state.viewer = viewer
    return viewer


@router.get("/healthz", include_in_schema=False)
def healthz() -> dict[str, str]:
    return {"status": "up"}


@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/transactions", status_code=303)


@router.get("/login")
def login_form(request: Request, next: str = "/transactions"):
    return render(request, "login.html", {"next": safe_next(next), "error": None})


@router.post("/login")
def login(
    request: Request,
    token: str = Form(default="", max_length=200),
    name: str = Form(default="", max_length=200),
    next: str = Form(default="/transactions", max_length=500),
    csrf: str = Form(default="", max_length=100),
):
    check_csrf(request, csrf)
    session = sign_in(token.strip(), name)
    if session is None:
        log.warning(
            "console.sign_in_refused", client=request.client.host if request.client else None
        )
        context = {"next": safe_next(next), "error": "That token is not valid here."}
        return render(request, "login.html", context, status_code=401)
    log.info("console.signed_in", kind=session.kind, name=session.name)
    _audit_sign(viewer_of(session), "console.signed_in", request)
    response = RedirectResponse(safe_next(next), status_code=303)
    remember(request, response, session)
    return response


@router.post("/logout")
def logout(request: Request, csrf: str = Form(default="", max_length=100)):
    check_csrf(request, csrf)
    session = current(request)
    if session.signed_in:
        _audit_sign(viewer_of(session), "console.signed_out", request)
    response = RedirectResponse("/login", status_code=303)
    forget(response)
    return response


def _audit_sign(viewer: Viewer | None, action: str, request: Request) -> None:
    """Sign-ins and sign-outs in the audit trail, under the tenant signed in to (an
    operator's under none). Refused sign-ins are logged, not kept: anyone may make them,
    and the trail keeps every row forever."""
    if viewer is None:
        return
    client = {"client": request.client.host} if request.client else None
    with session_scope() as db:
        audit.record(db, actor(viewer), action, None, None, client, scope=viewer.scope)


def _day(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


def _choice(value: str | None, allowed: list[str] | tuple[str, ...]) -> str | None:
    return value if value in allowed else None


@router.get("/transactions")
def transactions(
    request: Request,
    status: str | None = None,
    psp: str | None = None,
    action: str | None = None,
    q: str | None = None,
    review: str | None = None,
    cursor: str | None = None,
):
    viewer = signed_in(request)
    params = request.query_params
    filters = service.Filters(
        status=_choice(status, service.STATUSES),
        psp_id=psp[:40] if psp else None,
        action=_choice(action, service.ACTIONS),
        date_from=_day(params.get("from")),
        date_to=_day(params.get("to")),
        search=q.strip()[:200] if q and q.strip() else None,
        review=review == "1",
    )
    page = service.list_page(viewer, filters, service.parse_cursor(cursor))
    context = {
        "page": page,
        "filters": filters,
        "statuses": service.STATUSES,
        "actions": service.ACTIONS,
        "next_query": filters.query(cursor=page.next_cursor) if page.next_cursor else None,
        "section": "review" if filters.review else "transactions",
    }
    return render(request, "transactions.html", context)


@router.get("/transactions/{txn_id}")
def transaction(request: Request, txn_id: str):
    viewer = signed_in(request)
    page = service.transaction_page(viewer, txn_id)
    return render(request, "transaction.html", {"page": page, "section": "transactions"})


@router.get("/parked")
def parked(request: Request):
    viewer = signed_in(request)
    page = service.parked_page(viewer)
    return render(request, "parked.html", {"page": page, "section": "parked"})


@router.get("/audit")
def audit_trail(request: Request, before: int | None = None):
    viewer = signed_in(request)
    page = service.audit_page(viewer, before)
    context = {"page": page, "change": service.change, "section": "audit"}
    return render(request, "audit.html", context)


@router.get("/psps")
def psp_health(request: Request):
    viewer = signed_in(request)
    page = service.health_page(viewer)
    return render(request, "psps.html", {"page": page, "section": "psps"})


def flash(request: Request, response: Response, message: str) -> None:
    """Show ``message`` once, on the page the browser goes to next."""
    remember(request, response, dataclasses.replace(current(request), flash=message))
