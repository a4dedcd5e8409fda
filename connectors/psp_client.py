"""What the connectors send PSP requests through: connxt.http_wire (the standard library's
``http.client``, one send loop with merchant notifications), with the connectors' timeouts
given in httpx's model (``httpx.Timeout``).

A PSP call is one small request and its answer, read whole up to ``MAX_ANSWER_BYTES`` and
within ``deadline`` seconds in all however the PSP paces its bytes. Redirects are never
followed, nothing authenticates but the headers the connector sets, and no cookie is kept
or sent (a session one merchant's call was given must not ride along on another's): the
wire has no cookie jar, on the direct path and through a proxy alike.

Nothing is ever sent twice: a request that fails on a kept-alive connection is an error
like any other (the connector reads it as an unknown outcome, and the retry looks for the
payment before making one).

Where the environment names a proxy (``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY``), calls
go through it, except to hosts in ``NO_PROXY``.
"""

from __future__ import annotations

import ssl
import urllib.request
from contextlib import AbstractContextManager

import httpx

from connxt.http_wire import Answer, Limits, Stream, Wire

# Answers past this are refused (AnswerTooLarge): a PSP's JSON is a few KiB, and a
# runaway one must not fill the worker's memory. Reports stream under caps of their own.
MAX_ANSWER_BYTES = 4 * 1024 * 1024

__all__ = ["MAX_ANSWER_BYTES", "Answer", "PspClient", "Stream"]


def environment_proxies() -> dict[str, str]:
    """Scheme → proxy URL, as the environment names them."""
    found = urllib.request.getproxies()
    return {s: found[s] for s in ("http", "https", "all") if found.get(s)}


class PspClient:
    """Safe to share between threads: each request has a connection of its own while it
    runs, and gives it back to the pool once its answer is read whole."""

    def __init__(
        self,
        timeout: httpx.Timeout,
        deadline: float,
        ssl_context: ssl.SSLContext | None = None,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
    ):
        self.timeout = timeout
        self.limits = Limits(timeout.connect, timeout.read, deadline, max_answer_bytes)
        # One context for every connection: building one reads the whole CA bundle.
        context = ssl_context or httpx.create_ssl_context()
        self._wire = Wire(context, proxies=environment_proxies())

    def request(self, method: str, url: str, body: bytes | None, headers: dict[str, str]) -> Answer:
        return self._wire.send(method, url, body, headers, self.limits)

    def stream(
        self,
        method: str,
        url: str,
        body: bytes | None,
        headers: dict[str, str],
        max_bytes: int,
        deadline: float | None = None,
    ) -> AbstractContextManager[Stream]:
        """A call whose answer is read as it comes (a settlement report of a million
        lines), under a cap and a deadline of its own."""
        limits = Limits(
            self.limits.connect, self.limits.read, deadline or self.limits.total, max_bytes
        )
        return self._wire.open(method, url, body, headers, limits)

    def close(self) -> None:
        self._wire.close()
