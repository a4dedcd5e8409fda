"""Merchant notification URLs: what we agree to POST to, and the connection that does it.

A merchant URL is chosen by the merchant, so a POST to it must not become a way into our
own network. The address that is checked is the address connected to: the host name is
resolved once, inside the connection's own set-up (``PinnedBackend``), each address is
checked, and the socket is opened to that very address, while TLS is still verified for
the name. Nothing resolves the name a second time, so a name that answers a public address
to the check and a private one to the connection (DNS rebinding) gets nowhere. Redirects
are never followed and at most ``MAX_RESPONSE_BYTES`` of an answer are read.

Private, loopback, link-local and reserved addresses are refused unless
``CONNXT_ALLOW_PRIVATE_WEBHOOK_URLS`` is set (``make run``, for its demo receiver on
loopback); production never allows them.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from typing import Any
from urllib.parse import SplitResult, urlsplit

import httpcore
import httpx

from connxt.settings import Settings, get_settings

# What is read of a merchant's answer: its status is all we keep.
MAX_RESPONSE_BYTES = 64 * 1024

_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class UnsafeUrl(ValueError):
    """The URL is not one we deliver to."""


def check_url_form(url: str, settings: Settings | None = None) -> SplitResult:
    """Scheme, host and credentials; no name is resolved."""
    settings = settings or get_settings()
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (a port out of range raises here)
    except ValueError as exc:
        raise UnsafeUrl("is not a valid URL") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeUrl("must be an absolute http(s) URL")
    if settings.is_production and parts.scheme != "https":
        raise UnsafeUrl("must use https in production")
    if parts.username or parts.password:
        raise UnsafeUrl("must not carry credentials")
    return parts


def private_allowed(settings: Settings | None = None) -> bool:
    settings = settings or get_settings()
    return settings.allow_private_webhook_urls and not settings.is_production


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True for an address on the public internet; False for anything of ours or nobody's."""
    if isinstance(address, ipaddress.IPv6Address):
        # An IPv4 address written as IPv6 is that IPv4 address.
        embedded = address.ipv4_mapped or (
            ipaddress.IPv4Address(int(address) & 0xFFFFFFFF) if address in _NAT64 else None
        )
        if embedded is not None:
            return is_public(embedded)
    return address.is_global and not (
        address.is_multicast or address.is_reserved or address.is_unspecified
    )


def connectable_addresses(host: str, port: int, allow_private: bool) -> list[str]:
    """The addresses of ``host``, resolved once; refused when any of them is not public
    (a name with one inside address among public ones is not a merchant's endpoint)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise httpcore.ConnectError(f"host does not resolve: {host}") from exc
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not allow_private:
        for address in addresses:
            if not is_public(ipaddress.ip_address(address.split("%", 1)[0])):
                raise UnsafeUrl("resolves to a private, loopback or reserved address")
    return addresses


def check_merchant_url(url: str) -> None:
    """Early feedback when a merchant sets its URL; every delivery checks again as it
    connects (``merchant_client``), since what a name resolves to can change."""
    parts = check_url_form(url)
    allow = private_allowed()
    if allow:
        return
    try:
        connectable_addresses(parts.hostname or "", parts.port or 443, allow)
    except httpcore.ConnectError as exc:
        raise UnsafeUrl(str(exc)) from exc


class PinnedBackend(httpcore.SyncBackend):
    """Opens each connection to an address it has just resolved and checked itself."""

    def __init__(self, allow_private: bool):
        self.allow_private = allow_private

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        failure: Exception | None = None
        for address in connectable_addresses(host, port, self.allow_private):
            try:
                # An IP address: the connection does not look the name up again.
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc  # the name's next address, as a resolver-driven connect would
        raise failure or httpcore.ConnectError(f"no address for {host}")


class PinnedTransport(httpx.HTTPTransport):
    def __init__(self, allow_private: bool, ssl_context: ssl.SSLContext | None = None):
        super().__init__(retries=0, trust_env=False)
        # httpx takes no network backend, but the pool beneath it (httpcore's) does. TLS is
        # still set up for the URL's host name: SNI and certificate checks use the name.
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context or httpx.create_ssl_context(trust_env=False),
            max_connections=100,
            # Every connection kept: one closed after each notification is a new TCP
            # (and TLS) handshake for the next, on both sides, at the busiest moment.
            max_keepalive_connections=100,
            # Under the 5 s most servers keep an idle connection: a connection the
            # merchant is closing is not picked for the next notification.
            keepalive_expiry=2.0,
            network_backend=PinnedBackend(allow_private),
        )


def merchant_client(
    timeout: float, allow_private: bool, ssl_context: ssl.SSLContext | None = None
) -> httpx.Client:
    """The client merchant notifications go through: pinned connections, no redirects, no
    proxy or netrc from the environment."""
    return httpx.Client(
        transport=PinnedTransport(allow_private, ssl_context),
        timeout=httpx.Timeout(timeout, connect=3.0),
        follow_redirects=False,
        trust_env=False,
    )


def post(client: httpx.Client, url: str, body: bytes, headers: dict[str, str]) -> int:
    """POST to a merchant URL; its status code. At most MAX_RESPONSE_BYTES of the answer
    are read (raw: nothing is decompressed), the rest is dropped with the connection.

    A kept-alive connection the merchant closed as we sent is tried once more at once, on
    a new connection, rather than waiting out the backoff: the notification may then
    arrive twice, under the same ``webhook-id``, which is what the merchant de-duplicates
    on (notifications are at least once in any case)."""
    try:
        return _post_once(client, url, body, headers)
    except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError):
        return _post_once(client, url, body, headers)


def _post_once(client: httpx.Client, url: str, body: bytes, headers: dict[str, str]) -> int:
    with client.stream("POST", url, content=body, headers=headers) as response:
        read = 0
        for chunk in response.iter_raw():
            read += len(chunk)
            if read >= MAX_RESPONSE_BYTES:
                break
        return response.status_code
