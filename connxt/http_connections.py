"""The connections of the outgoing wire (connxt.http_wire): opened, tunnelled through a
proxy, kept alive between calls.

A connection is the standard library's ``http.client.HTTPConnection`` with a socket opened
here: to the first of the given addresses that accepts (the host's name itself, or
addresses already looked up and checked for it), TCP_NODELAY set (a request leaves in two
writes, and without it the body waits for the head's acknowledgement), TLS verified for
the host's name whatever address was connected to.

Kept connections wait in ``IdleConnections`` per key (scheme, host, port, and what else
decides where the socket goes), each let go after ``keepalive_seconds`` idle or as soon as
its peer has closed it: an HTTP/1.1 server says nothing between answers, so an idle
connection with something to read has been closed (or spoken on) by its peer.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import select
import socket
import ssl
import threading
import time
from collections.abc import Hashable, Iterable
from urllib.parse import unquote, urlsplit

from connxt.deadlines import Deadline, shut_down
from connxt.http_errors import ConnectError, ProxyError, TransportError, translated

# Where a kept connection goes; the same key, the same kind of connection.
Key = Hashable

# What is read of a proxy's answer to CONNECT before it is taken for no answer.
_MAX_TUNNEL_ANSWER = 16 * 1024


class Connection(http.client.HTTPConnection):
    """A kept connection a call's deadline can cut (connxt.deadlines)."""

    def shut(self) -> None:
        shut_down(self.sock)


def open_connection(
    host: str,
    port: int,
    addresses: Iterable[str],
    tls: ssl.SSLContext | None,
    timeout: float | None,
    deadline: Deadline,
    tunnel: Proxy | None = None,
    peer: str = "the server",
) -> Connection:
    """A connection for ``host`` to the first of ``addresses`` that accepts one; through
    ``tunnel`` (a CONNECT to the proxy, which is then what ``addresses`` are for); TLS when
    ``tls`` is given, verified for ``host``."""
    sock = _first_accepting(addresses, port if tunnel is None else tunnel.port, timeout, host)
    connection = Connection(host, port)
    connection.sock = sock  # opened here: http.client never resolves the name itself
    deadline.attach(connection)
    try:
        if tunnel is not None:
            tunnel.connect(connection, host, port)
        if tls is not None:
            try:
                # The name, not the address: SNI and the certificate check use it. The
                # handshake is bounded as a whole by the socket's (connect) timeout.
                connection.sock = tls.wrap_socket(sock, server_hostname=host)
            except (OSError, ssl.SSLError) as exc:
                raise translated(exc, "connect", peer) from exc
    except BaseException:
        connection.close()
        raise
    return connection


def _first_accepting(
    addresses: Iterable[str], port: int, timeout: float | None, host: str
) -> socket.socket:
    failure: TransportError | None = None
    for address in addresses:
        try:
            sock = socket.create_connection((address, port), timeout)
        except OSError as exc:  # the next address, as a resolver-driven connect would
            failure = translated(exc, "connect")
            continue
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            sock.close()
            raise
        return sock
    raise failure or ConnectError(f"no address for {host}")


class Proxy:
    """An HTTP proxy, as ``HTTP(S)_PROXY`` names it (``http://[user:password@]host:port``)."""

    def __init__(self, url: str):
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme != "http" or not parts.hostname:
            raise ProxyError(f"only http:// proxies are supported, not {url!r}")
        self.url = url
        self.host = parts.hostname
        self.port = parts.port or 80
        self.headers: dict[str, str] = {}
        if parts.username is not None:
            secret = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            self.headers["Proxy-Authorization"] = "Basic " + base64.b64encode(
                secret.encode()
            ).decode("ascii")

    def connect(self, connection: Connection, host: str, port: int) -> None:
        """Ask the proxy for a tunnel to ``host:port`` on ``connection``'s socket."""
        sock = connection.sock
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        head = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
        head += [f"{name}: {value}" for name, value in self.headers.items()]
        try:
            sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
            answer = b""
            while b"\r\n\r\n" not in answer:
                chunk = sock.recv(4096)
                if not chunk or len(answer) > _MAX_TUNNEL_ANSWER:
                    raise ProxyError("the proxy closed the tunnel unanswered")
                answer += chunk
        except OSError as exc:
            raise translated(exc, "connect", "the proxy") from exc
        status = answer.split(b"\r\n", 1)[0].split(b" ", 2)
        if len(status) < 2 or status[1] != b"200":
            raise ProxyError(f"the proxy refused the tunnel: {b' '.join(status[1:]).decode()}")


class IdleConnections:
    """Kept-alive connections waiting for their next request; safe to share between threads
    (each request has a connection of its own while it runs)."""

    def __init__(self, keepalive_seconds: float, max_idle_per_key: int):
        # Under the 5 s most servers keep an idle connection: one the server is closing is
        # not picked for the next request.
        self.keepalive_seconds = keepalive_seconds
        self.max_idle_per_key = max_idle_per_key
        self._idle: dict[Key, list[tuple[float, Connection]]] = {}
        self._lock = threading.Lock()

    def take(self, key: Key) -> Connection | None:
        """The most recently used live connection for ``key``, if any."""
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

    def give_back(self, key: Key, connection: Connection) -> None:
        with self._lock:
            connections = self._idle.setdefault(key, [])
            if len(connections) < self.max_idle_per_key:
                connections.append((time.monotonic(), connection))
                return
        connection.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for connections in idle.values():
            for _, connection in connections:
                connection.close()


def _closed_by_peer(connection: Connection) -> bool:
    sock = connection.sock
    if sock is None:
        return True
    with contextlib.suppress(OSError, ValueError):
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable)
    return True
