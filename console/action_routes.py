"""HTTP for the actions on a transaction: a confirmation page, then the POST that acts.

Every action is two steps: its button leads to a page saying what will happen, whose form
(with the session's CSRF token) does it. The POST refuses a form that skipped that page.
"""

from __future__ import annotations

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse

from console import actions, service
from console.auth import Viewer
from console.render import check_csrf, render
from console.routes import flash, signed_in

router = APIRouter()

ACTIONS = ("reconcile", "replay", "retry", "resolve")


def _target(
    page: service.TransactionPage, viewer: Viewer, action: str, target: str
) -> object | None:
    """What the action is about, found on the transaction's own page (so, in scope)."""
    if action == "replay":
        return next((w for w in page.webhooks if str(w.message.id) == target), None)
    if action == "retry":
        return next((n for n in page.notifications if n[0].id == target), None)
    if action == "resolve" and not viewer.is_operator:
        return None  # deciding about money is an operator's act
    return page.txn


@router.get("/transactions/{txn_id}/confirm/{action}")
def confirm(request: Request, txn_id: str, action: str, target: str = ""):
    viewer = signed_in(request)
    page = service.transaction_page(viewer, txn_id)
    about = _target(page, viewer, action, target) if action in ACTIONS else None
    if about is None:
        return render(request, "not_found.html", {"what": "action"}, status_code=404)
    context = {"page": page, "action": action, "target": target, "about": about}
    return render(request, "confirm.html", {**context, "section": "transactions"})


@router.post("/transactions/{txn_id}/actions/{action}")
def act(
    request: Request,
    txn_id: str,
    action: str,
    csrf: str = Form(default="", max_length=100),
    confirmed: str = Form(default=""),
    target: str = Form(default="", max_length=100),
    decision: str = Form(default="", max_length=20),
    note: str = Form(default="", max_length=2000),
    amount: str = Form(default="", max_length=40),
    currency: str = Form(default="", max_length=10),
):
    viewer = signed_in(request)
    check_csrf(request, csrf)
    if confirmed != "yes" or action not in ACTIONS:
        return render(request, "not_found.html", {"what": "action"}, status_code=400)
    if action == "replay" and not target.isdigit():
        return render(request, "not_found.html", {"what": "webhook"}, status_code=404)
    try:
        if action == "reconcile":
            done = actions.reconcile(viewer, txn_id)
        elif action == "replay":
            done = actions.replay_webhook(viewer, txn_id, int(target))
        elif action == "retry":
            done = actions.retry_notification(viewer, txn_id, target)
        else:
            done = actions.resolve(viewer, txn_id, decision, note, amount, currency)
        message = done.message
    except actions.Refused as refused:
        message = f"Not done: {refused}"
    response = RedirectResponse(f"/transactions/{txn_id}", status_code=303)
    flash(request, response, message)
    return response
