"""Pages from templates, escaped; the checks every form goes through.

Jinja2 escapes every value a template prints (autoescape on for every template, with no
``|safe`` anywhere), and the pages run no script at all: the Content-Security-Policy the
app sends allows none.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse

from console.session import csrf_matches, current, remember

TEMPLATES = Path(__file__).parent / "templates"


class SignInRequired(Exception):
    """No valid session: the browser is sent to the sign-in page, then back to ``path``."""

    def __init__(self, path: str):
        super().__init__(path)
        self.path = path


class CsrfRefused(Exception):
    """A form without this session's CSRF token (or from another origin)."""


def _when(value: datetime | None) -> str:
    if value is None:
        return "–"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _ms(value: float | Decimal | None) -> str:
    return "–" if value is None else f"{float(value):,.1f} ms"


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=_when, ms=_ms, percent=_percent)
    return env


_templates = _environment()


def render(
    request: Request, name: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    session = current(request)
    body = _templates.get_template(name).render(
        viewer=getattr(request.state, "viewer", None),
        csrf=session.csrf,
        flash=session.flash,
        section=context.pop("section", ""),
        **context,
    )
    response = HTMLResponse(body, status_code=status_code)
    # Every page stores the session: an anonymous visitor's CSRF token must be there when
    # the sign-in form comes back, and a message is shown once.
    remember(request, response, dataclasses.replace(session, flash=""))
    return response


def check_csrf(request: Request, submitted: str | None) -> None:
    """Refuse a form that does not carry this session's CSRF token, or that a page of
    another origin sent (the SameSite cookie refuses most of those already)."""
    origin = request.headers.get("origin")
    # The host only: behind a TLS-terminating proxy the scheme seen here is not the page's.
    if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
        raise CsrfRefused()
    if not csrf_matches(current(request), submitted):
        raise CsrfRefused()


def safe_next(path: str | None) -> str:
    """Only a path on this site: never another host (an open redirect)."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/transactions"
    parts = urlsplit(path)
    if parts.scheme or parts.netloc:
        return "/transactions"
    return path
