"""What the connectors send PSP requests through: HTTP/1.1 on the standard library's
``http.client`` (connxt.http_wire), failing with httpx's exceptions and timeouts.

A PSP call is one small request and its answer read whole, and the worker's lanes are
CPU-bound under load. Measured on the worker, per JSON POST and answer on loopback (the
sandbox): ~830 µs of CPU through ``httpx.Client`` and its own wire (httpcore and h11, pure
Python) against ~130 µs for ``http.client`` alone. None of ``httpx.Client``'s layers is
wanted here either: redirects are never followed, nothing authenticates but the headers the
connector sets, and a PSP's cookies are never kept (a session one merchant's call was given
must not ride along on another's).

Nothing is ever sent twice: a request that fails on a kept-alive connection is an error
like any other (the connector reads it as an unknown outcome, and the retry looks for the
payment before making one). What keeps that rare is that an idle connection is let go
after ``keepalive_seconds`` or as soon as the PSP has closed it.

Where the environment names an HTTP proxy, httpx's own client carries the calls instead,
through that proxy (honouring ``NO_PROXY``), as it always did.
"""

from __future__ import annotations

import ssl
import urllib.request
from dataclasses import dataclass
from email.message import Message
from urllib.parse import urlsplit

import httpx

from connxt.http_wire import IdleConnections, as_httpx_errors, connect, default_port
from connxt.tracing import client_span


@dataclass(frozen=True)
class Answer:
    """A PSP's answer, read whole."""

    status_code: int
    headers: list[tuple[str, str]]
    content: bytes

    @property
    def text(self) -> str:
        charset = "utf-8"
        for name, value in self.headers:
            if name.lower() == "content-type":
                message = Message()
                message["content-type"] = value
                charset = message.get_content_charset() or charset
        try:
            return self.content.decode(charset, errors="replace")
        except LookupError:  # a charset Python does not know
            return self.content.decode("utf-8", errors="replace")


class PspClient:
    """Safe to share between threads: each request has a connection of its own while it
    runs, and gives it back to the idle pool once its answer is read whole."""

    def __init__(
        self,
        timeout: httpx.Timeout,
        ssl_context: ssl.SSLContext | None = None,
        keepalive_seconds: float = 2.0,
        max_idle_per_host: int = 256,
    ):
        self.timeout = timeout
        # One context for every connection: building one reads the whole CA bundle.
        self.ssl_context = ssl_context or httpx.create_ssl_context()
        self._idle = IdleConnections(keepalive_seconds, max_idle_per_host)
        self._proxied: httpx.Client | None = None
        if any(urllib.request.getproxies().get(s) for s in ("http", "https", "all")):
            self._proxied = httpx.Client(timeout=timeout, follow_redirects=False)

    def request(self, method: str, url: str, body: bytes | None, headers: dict[str, str]) -> Answer:
        if self._proxied is not None:
            return self._through_proxy(method, url, body, headers)
        with client_span(method, url) as span:
            answer = self._send(method, url, body, headers)
            span["status"] = answer.status_code
            return answer

    def _send(self, method: str, url: str, body: bytes | None, headers: dict[str, str]) -> Answer:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise httpx.UnsupportedProtocol(f"cannot send a request to {url!r}")
        key = (parts.scheme, parts.hostname, parts.port or default_port(parts.scheme))
        connection = self._idle.take(key) or connect(
            key, [parts.hostname], self.ssl_context, self.timeout.connect
        )
        sock = connection.sock
        assert sock is not None
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        reusable = False
        try:
            sock.settimeout(self.timeout.write)
            with as_httpx_errors(writing=True):
                connection.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
                connection.putheader("Host", parts.netloc)
                for name, value in headers.items():
                    connection.putheader(name, value)
                if body is not None:
                    connection.putheader("Content-Length", str(len(body)))
                connection.endheaders(body)
            sock.settimeout(self.timeout.read)
            with as_httpx_errors():
                response = connection.getresponse()
                content = response.read()
            reusable = not response.will_close
            return Answer(response.status, response.getheaders(), content)
        finally:
            if reusable:
                self._idle.give_back(key, connection)
            else:
                connection.close()

    def close(self) -> None:
        self._idle.close()
        if self._proxied is not None:
            self._proxied.close()

    def _through_proxy(
        self, method: str, url: str, body: bytes | None, headers: dict[str, str]
    ) -> Answer:
        assert self._proxied is not None
        self._proxied.cookies.clear()  # never kept, as on the standard library's wire
        response = self._proxied.request(method, url, content=body, headers=headers)
        return Answer(response.status_code, list(response.headers.items()), response.content)
