"""HTTP for the console's Reconciliation pages (console.recon): every action is a form with
the session's CSRF token, and a difference is resolved from a page that says what it is."""

from __future__ import annotations

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse

from console import recon
from console.render import check_csrf, render
from console.routes import flash, signed_in

router = APIRouter()


@router.get("/reconciliation")
def runs(request: Request):
    viewer = signed_in(request)
    page = recon.runs_page(viewer)
    return render(request, "reconciliation.html", {"page": page, "section": "recon"})


@router.post("/reconciliation/runs")
def start(
    request: Request,
    csrf: str = Form(default="", max_length=100),
    psp: str = Form(default="", max_length=40),
    day: str = Form(default="", max_length=20),
):
    viewer = signed_in(request)
    check_csrf(request, csrf)
    try:
        run_id = recon.start_run(viewer, psp, day)
    except recon.Refused as refused:
        response = RedirectResponse("/reconciliation", status_code=303)
        flash(request, response, f"Not done: {refused}")
        return response
    response = RedirectResponse(f"/reconciliation/runs/{run_id}", status_code=303)
    flash(request, response, "Run queued: this page shows it once a worker has done it")
    return response


@router.get("/reconciliation/runs/{run_id}")
def run(request: Request, run_id: str):
    viewer = signed_in(request)
    page = recon.run_page(viewer, run_id)
    return render(request, "recon_run.html", {"page": page, "section": "recon"})


@router.get("/reconciliation/differences/{difference_id}/resolve")
def confirm_resolve(request: Request, difference_id: int):
    viewer = signed_in(request)
    found = recon.difference(viewer, difference_id)
    return render(request, "recon_resolve.html", {"d": found, "section": "recon"})


@router.post("/reconciliation/differences/{difference_id}/resolve")
def resolve(
    request: Request,
    difference_id: int,
    csrf: str = Form(default="", max_length=100),
    note: str = Form(default="", max_length=2000),
):
    viewer = signed_in(request)
    check_csrf(request, csrf)
    try:
        found = recon.resolve(viewer, difference_id, note)
        message, run_id = f"Difference {difference_id} resolved", found["runId"]
    except recon.Refused as refused:
        message, run_id = f"Not done: {refused}", recon.difference(viewer, difference_id)["runId"]
    response = RedirectResponse(f"/reconciliation/runs/{run_id}", status_code=303)
    flash(request, response, message)
    return response
