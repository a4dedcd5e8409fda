"""The connections merchant notifications are POSTed over.

Every connection is opened to an address ``workers.notify_urls`` has just resolved and
checked (the name is looked up once, and the socket goes to that address), while TLS is
verified for the name. Redirects are never followed (a 3xx is the merchant's answer), no
proxy or netrc from the environment is used, and at most ``MAX_RESPONSE_BYTES`` of an
answer are read: its status is all we keep.

Connections are kept alive per scheme, host and port, and let go after
``keepalive_seconds`` idle: under a burst, a new TCP (and TLS) handshake per notification
would be paid on both sides at the busiest moment.

Built on the standard library's ``http.client`` (connxt.http_wire) rather than httpx: a
notification is one small POST whose status is all that matters, and at volume httpx's
per-request machinery cost about six times the CPU (measured: ~1 ms against ~0.15 ms per
POST on the worker, where the notification lane is CPU-bound). Failures are raised as
httpx's exceptions, so an attempt's recorded error reads the same as a PSP call's
(``ConnectError``, ``ReadTimeout``, ...).
"""

from __future__ import annotations

import http.client
import ssl
from types import TracebackType
from urllib.parse import SplitResult

import httpx
import structlog

from connxt.http_wire import IdleConnections, Key, as_httpx_errors, connect, default_port
from connxt.tracing import client_span
from workers.notify_urls import check_url_form, connectable_addresses

# What is read of a merchant's answer: its status is all we keep.
MAX_RESPONSE_BYTES = 64 * 1024
USER_AGENT = "Connxt-Notifications/1"
_PEER = "the merchant"

log = structlog.get_logger()


class MerchantClient:
    """POSTs to merchant URLs; safe to share between threads (each POST has a connection
    of its own while it runs)."""

    def __init__(
        self,
        timeout: float,
        allow_private: bool,
        ssl_context: ssl.SSLContext | None = None,
        connect_timeout: float = 3.0,
        keepalive_seconds: float = 2.0,
        max_idle_per_host: int = 100,
    ):
        self.timeout = timeout
        self.connect_timeout = min(connect_timeout, timeout)
        self.allow_private = allow_private
        # One context for every connection: building one reads the whole CA bundle.
        self.ssl_context = ssl_context or httpx.create_ssl_context(trust_env=False)
        self._idle = IdleConnections(keepalive_seconds, max_idle_per_host)

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        """POST once; the merchant's status code.

        A kept-alive connection the merchant closed as we sent is tried once more at once,
        on a new connection, rather than waiting out the backoff: the notification may then
        arrive twice, under the same ``webhook-id``, which is what the merchant
        de-duplicates on (notifications are at least once in any case)."""
        parts = check_url_form(url)
        with client_span("POST", url) as span:
            try:
                span["status"] = self._post_once(parts, body, headers)
            except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError):
                span["status"] = self._post_once(parts, body, headers, fresh=True)
            # As httpx logs its requests (the URL's secrets are redacted: connxt.logging).
            log.debug("merchant.http_request", method="POST", url=url, status=span["status"])
            return span["status"]

    def close(self) -> None:
        self._idle.close()

    def __enter__(self) -> MerchantClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _post_once(
        self, parts: SplitResult, body: bytes, headers: dict[str, str], fresh: bool = False
    ) -> int:
        key = (parts.scheme, parts.hostname or "", parts.port or default_port(parts.scheme))
        connection = None if fresh else self._idle.take(key)
        if connection is None:
            connection = self._connect(key)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        request_headers = {
            "User-Agent": USER_AGENT,
            **headers,
            "Host": parts.netloc,  # as the URL wrote it (credentials are refused)
        }
        reusable = False
        try:
            with as_httpx_errors(writing=True, peer=_PEER):
                connection.request("POST", target, body=body, headers=request_headers)
            with as_httpx_errors(writing=False, peer=_PEER):
                response = connection.getresponse()
                status = response.status
                reusable = _read_capped(response) and not response.will_close
            return status
        finally:
            if reusable:
                self._idle.give_back(key, connection)
            else:
                connection.close()

    def _connect(self, key: Key) -> http.client.HTTPConnection:
        """A connection to the first address of the host that answers, each address checked
        (``connectable_addresses``) before any is tried."""
        _, host, port = key
        addresses = connectable_addresses(host, port, self.allow_private)
        connection = connect(key, addresses, self.ssl_context, self.connect_timeout)
        assert connection.sock is not None
        connection.sock.settimeout(self.timeout)
        return connection


def _read_capped(response: http.client.HTTPResponse) -> bool:
    """Read at most MAX_RESPONSE_BYTES of the answer; True when all of it was read (the
    connection can carry the next notification)."""
    read = 0
    while read < MAX_RESPONSE_BYTES:
        chunk = response.read(min(65536, MAX_RESPONSE_BYTES - read))
        if not chunk:
            return True
        read += len(chunk)
    return response.isclosed()
