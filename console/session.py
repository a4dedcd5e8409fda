"""The console's session cookie: sealed, so it can be neither read nor forged.

The cookie holds who signed in (an operator's name, or the id of the tenant's API token
row), a CSRF token and an expiry, sealed with AES-GCM under the service's key ring
(connxt.secrets) with associated data of its own: every console process of a deployment
opens it, a key rotation keeps it valid while the old key stays in the ring, and the
token itself is never in it. A visitor who has not signed in gets an anonymous session
too, so that the sign-in form carries a CSRF token like every other form.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import secrets
import time
from dataclasses import asdict, dataclass
from typing import Literal

from fastapi import Request, Response

from connxt.secrets import KeyRingError, Sealed, key_ring
from connxt.settings import get_settings

COOKIE = "connxt_console"
_AAD = b"connxt-console-session:v1"
# An anonymous session only needs to outlive filling in the sign-in form.
_ANONYMOUS_SECONDS = 3600


@dataclass(frozen=True)
class Session:
    kind: Literal["anonymous", "operator", "tenant"]
    csrf: str
    expires: float
    name: str = ""  # the operator's configured name, or what a tenant's user typed
    operator_fingerprint: str = ""  # part of the operator token's SHA-256: a new token ends it
    token_id: int = 0  # the tenant's ApiToken row: a revoked token ends the session
    flash: str = ""  # what the last action did, shown once on the next page

    @property
    def signed_in(self) -> bool:
        return self.kind != "anonymous"


def anonymous() -> Session:
    return Session("anonymous", secrets.token_urlsafe(24), time.time() + _ANONYMOUS_SECONDS)


def signed_in_as(
    kind: Literal["operator", "tenant"], name: str, fingerprint: str = "", token_id: int = 0
) -> Session:
    """A new session, with a new CSRF token: nothing carries over from before sign-in."""
    lifetime = get_settings().console_session_hours * 3600
    return Session(
        kind,
        secrets.token_urlsafe(24),
        time.time() + lifetime,
        name=name,
        operator_fingerprint=fingerprint,
        token_id=token_id,
    )


def seal(session: Session) -> str:
    sealed = key_ring().seal(json.dumps(asdict(session)).encode(), _AAD)
    return f"{sealed.key_id}.{base64.urlsafe_b64encode(sealed.blob).decode().rstrip('=')}"


def unseal(value: str | None) -> Session | None:
    """The session in a cookie; None for anything forged, damaged, stale or expired."""
    if not value or len(value) > 4096:
        return None
    key_id, _, blob = value.rpartition(".")
    try:
        raw = base64.urlsafe_b64decode(blob + "=" * (-len(blob) % 4))
        plain = key_ring().open(Sealed(key_id, raw), _AAD)
        session = Session(**json.loads(plain))
    except (binascii.Error, ValueError, TypeError, KeyRingError):
        return None
    return session if session.expires > time.time() else None


def current(request: Request) -> Session:
    """The request's session, or a new anonymous one (stored on the response by
    ``remember``)."""
    found = getattr(request.state, "console_session", None)
    if found is None:
        found = unseal(request.cookies.get(COOKIE)) or anonymous()
        request.state.console_session = found
    return found


def remember(request: Request, response: Response, session: Session) -> None:
    response.set_cookie(
        COOKIE,
        seal(session),
        max_age=max(1, int(session.expires - time.time())),
        httponly=True,
        samesite="strict",
        # Production is served over TLS: the cookie never travels in clear there.
        secure=get_settings().is_production or request.url.scheme == "https",
        path="/",
    )


def forget(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")


def csrf_matches(session: Session, submitted: str | None) -> bool:
    if not submitted:
        return False
    # As bytes: compare_digest refuses text with non-ASCII characters (a TypeError, so a
    # 500 for a forged form), where bytes of any value just differ.
    return hmac.compare_digest(session.csrf.encode(), submitted.encode())
