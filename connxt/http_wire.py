"""Outgoing HTTP/1.1 on the standard library's ``http.client``: the one send loop of PSP
calls (connectors.psp_client) and merchant notifications (workers.merchant_http).

urllib3 was tried here and measured: 493 against 356 µs of worker CPU per PSP call (its
Retry and Timeout objects, header dictionaries and checks on every answer cost about
120 µs over ``http.client`` alone), where the PSP lanes are CPU-bound under load. So the
little that is needed is kept here (connxt.http_connections opens, tunnels and keeps the
connections):

- Nothing is sent twice and no redirect is followed: a request that fails on a kept
  connection is an error like any other. A PSP call's outcome is then unknown, and the
  retry looks for the payment before making one; only a wire made with
  ``resend_if_dropped`` (notifications, at least once by design, which the merchant
  de-duplicates by ``webhook-id``) sends once more at once, on a new connection.
- Every call has a total deadline (``Limits.total``, connxt.deadlines), however its peer
  paces its bytes, and reads at most ``Limits.max_bytes`` of the answer.
- Pinned addresses (``addresses``): the host's name is looked up by the caller's function
  when a connection is opened, every address checked, and the socket goes to that very
  address while TLS is verified for the name: what was checked is what is connected to
  (workers.notify_urls).
- Proxies where the wire is given them (the environment's ``HTTP(S)_PROXY`` and
  ``NO_PROXY``): http:// calls in absolute form to the proxy, https:// ones through a
  CONNECT tunnel. No cookie is ever kept or sent: there is no jar.
- Failures under Connxt's names (connxt.http_errors), so a recorded error reads the same
  whichever call met it.
- An answer can be read whole (``send``) or as it comes (``open``: ``Stream.chunks`` and
  ``Stream.lines``, under the same cap, deadline and span).
"""

from __future__ import annotations

import http.client
import ssl
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import Message
from urllib.parse import urlsplit
from urllib.request import proxy_bypass

from connxt.deadlines import Deadline
from connxt.http_connections import (
    Connection,
    IdleConnections,
    Key,
    Proxy,
    open_connection,
)
from connxt.http_errors import (
    AnswerTooLarge,
    DeadlineExceeded,
    Phase,
    ReadError,
    RemoteProtocolError,
    TransportError,
    UnsupportedProtocol,
    WriteError,
    translated,
)
from connxt.tracing import client_span

KEEPALIVE_SECONDS = 2.0


@dataclass(frozen=True)
class Limits:
    """What one call may take: seconds to connect, per read (and write), in all; bytes of
    answer."""

    connect: float | None
    read: float | None
    total: float
    max_bytes: int


@dataclass(frozen=True)
class Answer:
    """An answer read whole."""

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


class Stream:
    """An answer as it arrives. Reading past ``max_bytes`` raises ``AnswerTooLarge``; the
    connection is kept for the next call only once the answer has been read to its end."""

    def __init__(
        self, response: http.client.HTTPResponse, deadline: Deadline, max_bytes: int, peer: str
    ):
        self.status = response.status
        self._response = response
        self._deadline = deadline
        self._left = max_bytes
        self._max_bytes = max_bytes
        self._peer = peer

    @property
    def headers(self) -> list[tuple[str, str]]:
        return self._response.getheaders()

    @property
    def complete(self) -> bool:
        return self._response.isclosed()

    def read(self) -> bytes:
        """The whole answer."""
        declared = self._response.length
        if declared is not None and declared > self._left:
            raise AnswerTooLarge(f"the answer is {declared} bytes, over {self._max_bytes}")
        content = self._read(self._left + 1)
        if len(content) > self._left:
            raise AnswerTooLarge(f"the answer runs past {self._max_bytes} bytes")
        self._left -= len(content)
        return content

    def chunks(self, size: int = 64 * 1024) -> Iterator[bytes]:
        """The answer in pieces of at most ``size`` bytes, as they arrive."""
        while not self.complete:
            chunk = self._read(min(size, self._left + 1))
            if not chunk:
                return
            if len(chunk) > self._left:
                raise AnswerTooLarge(f"the answer runs past {self._max_bytes} bytes")
            self._left -= len(chunk)
            yield chunk

    def lines(self, size: int = 64 * 1024) -> Iterator[bytes]:
        """The answer line by line (each without its line ending)."""
        rest = b""
        for chunk in self.chunks(size):
            rest += chunk
            *done, rest = rest.split(b"\n")
            for line in done:
                yield line.removesuffix(b"\r")
        if rest:
            yield rest.removesuffix(b"\r")

    def discard(self) -> None:
        """Read and drop what there is, up to the cap: an answer whose status is all
        that is kept. A longer one is left unread (and its connection closed)."""
        self._read(self._left + 1)

    def _read(self, amount: int) -> bytes:
        try:
            data = self._response.read(amount)
        except (OSError, http.client.HTTPException) as exc:
            raise _failure(exc, self._deadline, "read", self._peer) from exc
        if self._deadline.fired:  # an answer cut short by its deadline is no answer
            raise DeadlineExceeded("the call ran past its deadline")
        return data


def _failure(exc: BaseException, deadline: Deadline, phase: Phase, peer: str) -> TransportError:
    if deadline.passed:
        return DeadlineExceeded("the call ran past its deadline")
    return translated(exc, phase, peer)


Addresses = Callable[[str, int], list[str]]

# A kept connection the peer closed as the request went out fails with one of these.
_BROKEN_UNDER_REQUEST = (ReadError, WriteError, RemoteProtocolError)


@dataclass(frozen=True)
class _Route:
    """Where a call's connection goes, and what it sends there."""

    key: Key
    target: str  # the request line's target: a path, or the whole URL to a proxy
    open: Callable[[Deadline], Connection]
    headers: Mapping[str, str]


class Wire:
    """Calls over kept connections; safe to share between threads (each call has a
    connection of its own while it runs).

    ``addresses``: open each connection to one of the addresses this function gives
    (checked) for the URL's host, instead of letting the resolver choose. ``proxies``:
    scheme → proxy URL, as ``urllib.request.getproxies()`` reads the environment (hosts in
    ``NO_PROXY`` go direct). ``resend_if_dropped``: send once more, at once, on a new
    connection and within the same deadline, when the connection breaks under the
    request."""

    def __init__(
        self,
        ssl_context: ssl.SSLContext,
        *,
        addresses: Addresses | None = None,
        proxies: Mapping[str, str] | None = None,
        resend_if_dropped: bool = False,
        max_idle_per_host: int = 256,
        peer: str = "the server",
    ):
        self._tls = ssl_context
        self._addresses = addresses
        self._proxies = {scheme: Proxy(url) for scheme, url in (proxies or {}).items()}
        self._resend = resend_if_dropped
        self._peer = peer
        self._idle = IdleConnections(KEEPALIVE_SECONDS, max_idle_per_host)

    def send(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str], limits: Limits
    ) -> Answer:
        """One call, its answer read whole."""
        with self.open(method, url, body, headers, limits) as stream:
            return Answer(stream.status, stream.headers, stream.read())

    @contextmanager
    def open(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str], limits: Limits
    ) -> Iterator[Stream]:
        """One call; its answer to read as it comes, within the block."""
        with client_span(method, url) as span:
            deadline = Deadline(limits.total)
            try:
                route = self._route(url, headers, limits)
                connection, response = self._exchange(route, method, body, limits, deadline)
                span["status"] = response.status
                kept = False
                try:
                    yield Stream(response, deadline, limits.max_bytes, self._peer)
                    kept = response.isclosed() and not response.will_close
                finally:
                    deadline.detach(connection)  # no late deadline reaches its next call
                    if kept:
                        self._idle.give_back(route.key, connection)
                    else:
                        connection.close()
            finally:
                deadline.finish()

    def _exchange(
        self, route: _Route, method: str, body: bytes | None, limits: Limits, deadline: Deadline
    ) -> tuple[Connection, http.client.HTTPResponse]:
        """The request sent and its answer's head read, on a kept connection or a new one."""
        resends = 1 if self._resend else 0
        fresh = False
        while True:
            connection = None if fresh else self._idle.take(route.key)
            if connection is None:
                try:
                    connection = route.open(deadline)
                except TransportError as exc:
                    if deadline.passed:
                        raise DeadlineExceeded("the call ran past its deadline") from exc
                    raise
            else:
                deadline.attach(connection)
            try:
                return connection, self._request(connection, route, method, body, limits, deadline)
            except TransportError as failure:
                connection.close()
                if resends and isinstance(failure, _BROKEN_UNDER_REQUEST):
                    resends, fresh = resends - 1, True
                    continue
                raise

    def _request(
        self,
        connection: Connection,
        route: _Route,
        method: str,
        body: bytes | None,
        limits: Limits,
        deadline: Deadline,
    ) -> http.client.HTTPResponse:
        try:
            connection.sock.settimeout(limits.read)
            connection.putrequest(method, route.target, skip_host=True, skip_accept_encoding=True)
            for name, value in route.headers.items():
                connection.putheader(name, value)
            if body is not None:
                connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body)
        except (OSError, http.client.HTTPException) as exc:
            raise _failure(exc, deadline, "write", self._peer) from exc
        try:
            return connection.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            raise _failure(exc, deadline, "read", self._peer) from exc

    def _route(self, url: str, headers: Mapping[str, str], limits: Limits) -> _Route:
        parts = urlsplit(url)
        scheme, host = parts.scheme, parts.hostname
        if scheme not in ("http", "https") or not host:
            raise UnsupportedProtocol(f"cannot send a request to {url!r}")
        port = parts.port or (443 if scheme == "https" else 80)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        sent = {**headers, "Host": parts.netloc.rpartition("@")[2]}
        tls = self._tls if scheme == "https" else None
        peer, timeout = self._peer, limits.connect
        proxy = self._proxy_for(scheme, host)
        if proxy is None:
            addresses = self._addresses

            def direct(deadline: Deadline) -> Connection:
                found = addresses(host, port) if addresses else [host]
                return open_connection(host, port, found, tls, timeout, deadline, peer=peer)

            return _Route((scheme, host, port), path, direct, sent)
        if scheme == "http":  # the whole URL to the proxy, which makes the call

            def forward(deadline: Deadline) -> Connection:
                return open_connection(
                    proxy.host, proxy.port, [proxy.host], None, timeout, deadline, peer=peer
                )

            return _Route(("proxy", proxy.url), url, forward, {**sent, **proxy.headers})

        def tunnel(deadline: Deadline) -> Connection:
            return open_connection(host, port, [proxy.host], tls, timeout, deadline, proxy, peer)

        return _Route((scheme, host, port, proxy.url), path, tunnel, sent)

    def _proxy_for(self, scheme: str, host: str) -> Proxy | None:
        if not self._proxies:
            return None
        proxy = self._proxies.get(scheme) or self._proxies.get("all")
        if proxy is None or proxy_bypass(host):
            return None
        return proxy

    def close(self) -> None:
        self._idle.close()
