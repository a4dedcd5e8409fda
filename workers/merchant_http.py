"""The connections merchant notifications are POSTed over: connxt.http_wire (the one send
loop PSP calls use too), each opened to a checked address.

Every connection is opened to an address ``workers.notify_urls`` has just resolved and
checked (the name is looked up once, as the connection is opened, and the socket goes to
that very address), while TLS is verified for the name. Redirects are never followed (a
3xx is the merchant's answer), no proxy or netrc from the environment is used, and at most
``MAX_RESPONSE_BYTES`` of an answer are read: its status is all we keep.

An attempt has a total deadline (the notification timeout), however the merchant paces its
bytes: a merchant that answers a byte every few seconds is cut off when it passes, so it
holds a notify thread no longer than a silent one does (connxt.deadlines).

Connections are kept alive per scheme, host and port, and let go after 2 s idle: under a
burst, a new TCP (and TLS) handshake per notification would be paid on both sides at the
busiest moment. A kept connection the merchant closed as we sent is tried once more at
once, on a new connection, within the same deadline.
"""

from __future__ import annotations

import ssl
from types import TracebackType

import certifi
import structlog

from connxt.http_wire import Limits, Wire
from workers.notify_urls import check_url_form, connectable_addresses

# What is read of a merchant's answer: its status is all we keep.
MAX_RESPONSE_BYTES = 64 * 1024
USER_AGENT = "Connxt-Notifications/1"

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
        max_idle_per_host: int = 100,
    ):
        self.timeout = timeout
        self.allow_private = allow_private
        # The whole attempt within ``timeout``, each read too.
        self.limits = Limits(min(connect_timeout, timeout), timeout, timeout, MAX_RESPONSE_BYTES)
        self._wire = Wire(
            # One context for every connection: building one reads the whole CA bundle.
            ssl_context or ssl.create_default_context(cafile=certifi.where()),
            addresses=self._checked_addresses,
            resend_if_dropped=True,
            max_idle_per_host=max_idle_per_host,
            peer="the merchant",
        )

    def _checked_addresses(self, host: str, port: int) -> list[str]:
        return connectable_addresses(host, port, self.allow_private)

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        """POST once; the merchant's status code.

        A kept-alive connection the merchant closed as we sent is tried once more at once,
        on a new connection, rather than waiting out the backoff: the notification may then
        arrive twice, under the same ``webhook-id``, which is what the merchant
        de-duplicates on (notifications are at least once in any case)."""
        check_url_form(url)
        request_headers = {"User-Agent": USER_AGENT, **headers}
        with self._wire.open("POST", url, body, request_headers, self.limits) as answer:
            answer.discard()
            status = answer.status
        # As httpx logs its requests (the URL's secrets are redacted: connxt.logging).
        log.debug("merchant.http_request", method="POST", url=url, status=status)
        return status

    def close(self) -> None:
        self._wire.close()

    def __enter__(self) -> MerchantClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
