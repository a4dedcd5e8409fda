"""Outgoing HTTP/1.1 on the standard library's ``http.client``, failing as httpx fails.

Both kinds of outgoing call use it: PSP calls (connectors.wire) and merchant notifications
(workers.merchant_http). httpx's own
wire (httpcore and h11, pure Python) cost about five times the CPU of ``http.client`` per
call on the worker (measured: ~550 µs against ~130 µs for a small request and answer on
loopback), and the worker's lanes are CPU-bound under load.

What is shared here: opening a connection (``connect``), the failures named as httpx names
them (so a recorded error reads the same whichever wire carried it), and a pool of idle
kept-alive connections per scheme, host and port, each let go after ``keepalive_seconds``
idle or as soon as its peer has closed it.
"""

from __future__ import annotations

import http.client
import select
import socket
import ssl
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import httpx

Key = tuple[str, str, int]  # scheme, host, port


def default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def connect(
    key: Key, addresses: Iterable[str], ssl_context: ssl.SSLContext, connect_timeout: float | None
) -> http.client.HTTPConnection:
    """A connection for ``key``'s host to the first of ``addresses`` that accepts one (the
    host's name itself, or addresses already looked up and checked for it); TLS, when
    https, verified for the name, not the address."""
    scheme, host, port = key
    failure: Exception | None = None
    for address in addresses:
        try:
            with as_httpx_errors(connecting=True):
                sock = socket.create_connection((address, port), connect_timeout)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            failure = exc  # the next address, as a resolver-driven connect would
            continue
        try:
            # A request goes out in two writes (head, then body): without this, the body
            # waits for the head's acknowledgement (Nagle and delayed ACKs).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme == "https":
                with as_httpx_errors(connecting=True):
                    # The name, not the address: SNI and the certificate check use it.
                    sock = ssl_context.wrap_socket(sock, server_hostname=host)
        except BaseException:
            sock.close()
            raise
        connection = http.client.HTTPConnection(host, port)
        connection.sock = sock  # opened here: http.client never resolves the name itself
        return connection
    raise failure or httpx.ConnectError(f"no address for {host}")


class IdleConnections:
    """Kept-alive connections waiting for their next request; safe to share between threads
    (each request has a connection of its own while it runs)."""

    def __init__(self, keepalive_seconds: float, max_idle_per_host: int):
        # Under the 5 s most servers keep an idle connection: one the server is closing is
        # not picked for the next request.
        self.keepalive_seconds = keepalive_seconds
        self.max_idle_per_host = max_idle_per_host
        self._idle: dict[Key, list[tuple[float, http.client.HTTPConnection]]] = {}
        self._lock = threading.Lock()

    def take(self, key: Key) -> http.client.HTTPConnection | None:
        """The most recently used live connection to ``key``, if any."""
        now = time.monotonic()
        while True:
            with self._lock:
                connections = self._idle.get(key)
                if not connections:
                    return None
                since, connection = connections.pop()
            if now - since < self.keepalive_seconds and not _closed_by_peer(connection):
                return connection
            connection.close()

    def give_back(self, key: Key, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            connections = self._idle.setdefault(key, [])
            if len(connections) < self.max_idle_per_host:
                connections.append((time.monotonic(), connection))
                return
        connection.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for connections in idle.values():
            for _, connection in connections:
                connection.close()


def _closed_by_peer(connection: http.client.HTTPConnection) -> bool:
    """An idle connection with something to read has been closed (or spoken on) by its
    peer: an HTTP/1.1 server says nothing between answers."""
    sock = connection.sock
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


@contextmanager
def as_httpx_errors(
    writing: bool = False, connecting: bool = False, peer: str = "the server"
) -> Iterator[None]:
    """The standard library's failures as httpx names them."""
    try:
        yield
    except TimeoutError as exc:
        kind = (
            httpx.ConnectTimeout
            if connecting
            else httpx.WriteTimeout
            if writing
            else httpx.ReadTimeout
        )
        raise kind(str(exc) or "timed out") from exc
    except http.client.RemoteDisconnected as exc:
        raise httpx.RemoteProtocolError(f"{peer} closed the connection unanswered") from exc
    except http.client.HTTPException as exc:
        raise httpx.RemoteProtocolError(f"{type(exc).__name__}: {exc}") from exc
    except OSError as exc:
        if connecting:
            raise httpx.ConnectError(str(exc)) from exc
        raise (httpx.WriteError if writing else httpx.ReadError)(str(exc)) from exc
