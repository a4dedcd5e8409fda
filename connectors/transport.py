"""HTTP plumbing shared by the connectors: one pooled client, recorded and redacted calls.

Every round trip becomes an ``Exchange`` (shown to merchants in ``data.meta``), so the
recording redacts secrets before anything leaves this module: headers are never recorded
and secret-looking fields are replaced by ``***``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import httpx
import structlog

from connectors.base import Exchange
from connectors.psp_client import Answer, PspClient, Stream
from connxt.http_errors import TransportError
from connxt.logging import redact
from connxt.metrics import PSP_REQUESTS
from connxt.settings import get_settings

log = structlog.get_logger()

USER_AGENT = "Connxt/1"

_shared: tuple[int, PspClient] | None = None
_shared_lock = threading.Lock()

# 4xx answers that mean "not now" rather than "no": a timeout, an idempotent request still
# in flight, rate limiting. Reading them as refusals would reject payments that may go on.
_RETRYABLE_4XX = frozenset({408, 409, 425, 429})

# Bodies recorded in an Exchange are cut here: a PSP's HTML error page is not data.
_MAX_RECORDED_TEXT = 2000


def shared_client() -> PspClient:
    """The process's client for PSP calls, created on first use; shared by its threads.

    Per pid: a client made before a prefork worker forks would share its sockets with the
    children.
    """
    global _shared
    shared = _shared
    if shared is None or shared[0] != os.getpid():
        with _shared_lock:
            if _shared is None or _shared[0] != os.getpid():
                _shared = (os.getpid(), new_client())
            shared = _shared
    return shared[1]


def new_client(timeout: httpx.Timeout | None = None, deadline: float | None = None) -> PspClient:
    """A client for PSP calls (connectors.psp_client), with the settings' timeouts and deadline
    by default."""
    settings = get_settings()
    if timeout is None:
        timeout = httpx.Timeout(settings.psp_read_timeout, connect=settings.psp_connect_timeout)
    return PspClient(timeout, deadline or settings.psp_call_deadline_seconds)


def default_base(sandbox_path: str, production: str) -> str:
    """The PSP base URL: the sandbox when ``CONNXT_SANDBOX_URL`` is set, else production."""
    sandbox = get_settings().sandbox_url
    if sandbox:
        return f"{sandbox.rstrip('/')}/{sandbox_path}"
    return production


def _encode(value: Any) -> str:
    if isinstance(value, Decimal):
        # Decimal text is a valid JSON number; going through float would round it.
        if not value.is_finite():
            raise ValueError("amounts must be finite")
        return f"{value:f}"
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{_encode(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_encode(v) for v in value) + "]"
    return json.dumps(value)


def dumps(value: Any) -> bytes:
    """JSON with Decimals written as exact numbers."""
    return _encode(value).encode()


def loads(raw: bytes | str) -> Any:
    """JSON with every non-integer number read as Decimal."""
    return json.loads(raw, parse_float=Decimal)


@dataclass(frozen=True)
class Call:
    """The result of one round trip: a response, or the transport error that replaced it."""

    response: Answer | None
    body: Any  # parsed JSON when the answer was JSON, else text, else None
    exchange: Exchange

    @property
    def status(self) -> int | None:
        return self.response.status_code if self.response is not None else None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def rejected(self) -> bool:
        """An explicit refusal (4xx): the PSP understood and said no."""
        status = self.status
        return status is not None and 400 <= status < 500 and status not in _RETRYABLE_4XX

    @property
    def unknown(self) -> bool:
        """No usable answer: transport error, timeout, 5xx. Never read as a refusal."""
        return not self.ok and not self.rejected


def _recorded(body: Any) -> Any:
    """A JSON-native, redacted copy for the record (floats are fine for display)."""
    if isinstance(body, bytes):
        try:
            body = json.loads(body)
        except ValueError:
            body = body.decode(errors="replace")
    if isinstance(body, str) and len(body) > _MAX_RECORDED_TEXT:
        body = body[:_MAX_RECORDED_TEXT] + "…"
    return redact(body)


def _parse(response: Answer) -> Any:
    if not response.content:
        return None
    try:
        return loads(response.content)
    except ValueError:
        return response.text


def send(
    client: PspClient,
    method: str,
    url: str,
    *,
    json_body: Any = None,
    form: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    psp: str,
) -> Call:
    """One request, never raising for transport errors: they come back as ``Call.unknown``."""
    content: bytes | None = None
    request_headers = {"User-Agent": USER_AGENT, "Accept": "*/*", **(headers or {})}
    if json_body is not None:
        content = dumps(json_body)
        request_headers["Content-Type"] = "application/json"
    elif form is not None:
        content = urlencode(form).encode()
        request_headers["Content-Type"] = "application/x-www-form-urlencoded"
    if params:
        url = f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"
    recorded_request = _recorded(content if json_body is not None else form)
    started = time.perf_counter()
    try:
        response = client.request(method, url, content, request_headers)
    except TransportError as exc:
        elapsed = (time.perf_counter() - started) * 1000
        PSP_REQUESTS.labels(psp, method, type(exc).__name__).observe(elapsed / 1000)
        log.warning(
            "connectors.http.error",
            psp=psp,
            method=method,
            url=url,
            error=type(exc).__name__,
            elapsed_ms=round(elapsed, 1),
        )
        exchange = Exchange(
            method,
            url,
            recorded_request,
            None,
            None,
            elapsed,
            error=f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__,
        )
        return Call(None, None, exchange)
    elapsed = (time.perf_counter() - started) * 1000
    PSP_REQUESTS.labels(psp, method, str(response.status_code)).observe(elapsed / 1000)
    body = _parse(response)
    # Debug: the exchange itself is kept with the transaction (data.meta), and a line per
    # PSP call would cost more than the call's own bookkeeping at volume.
    log.debug(
        "connectors.http.response",
        psp=psp,
        method=method,
        url=url,
        status_code=response.status_code,
        elapsed_ms=round(elapsed, 1),
    )
    exchange = Exchange(
        method,
        url,
        recorded_request,
        response.status_code,
        _recorded(response.content) if response.content else None,
        elapsed,
    )
    return Call(response, body, exchange)


@contextmanager
def stream(
    client: PspClient,
    method: str,
    url: str,
    *,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    psp: str,
    max_bytes: int,
    deadline: float | None = None,
) -> Iterator[Stream]:
    """A call whose answer is read as it comes (``Stream.lines``, ``Stream.chunks``), on the
    same wire as ``send``: its timeouts, a cap (``max_bytes``) and a deadline of its own,
    the same metric and log line. Unlike ``send`` it raises: a transport error
    (connxt.http_errors.TransportError), a cap passed or a deadline met halfway through a
    report leaves no answer to act on."""
    request_headers = {"User-Agent": USER_AGENT, "Accept": "*/*", **(headers or {})}
    if params:
        url = f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"
    started = time.perf_counter()
    outcome = "unknown"
    try:
        with client.stream(method, url, body, request_headers, max_bytes, deadline) as answer:
            outcome = str(answer.status)
            yield answer
    except TransportError as exc:
        outcome = type(exc).__name__
        log.warning(
            "connectors.http.error",
            psp=psp,
            method=method,
            url=url,
            error=outcome,
            elapsed_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        raise
    finally:
        PSP_REQUESTS.labels(psp, method, outcome).observe(time.perf_counter() - started)
