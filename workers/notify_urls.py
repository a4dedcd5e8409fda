"""Merchant notification URLs: what we agree to POST to.

A merchant URL is chosen by the merchant, so a POST to it must not become a way into our
own network. The address that is checked is the address connected to: the host name is
resolved once, as the connection is opened (``workers.merchant_http``), each address is
checked here, and the socket is opened to that very address, while TLS is still verified
for the name. Nothing resolves the name a second time, so a name that answers a public
address to the check and a private one to the connection (DNS rebinding) gets nowhere.

Private, loopback, link-local and reserved addresses are refused unless
``CONNXT_ALLOW_PRIVATE_NOTIFICATION_URLS`` is set (``make run``, for its demo receiver on
loopback); production never allows them.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import SplitResult, urlsplit

from connxt.http_errors import ConnectError
from connxt.settings import Settings, get_settings

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
    return settings.allow_private_notification_urls and not settings.is_production


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True for an address on the public internet; False for anything of ours or nobody's."""
    if isinstance(address, ipaddress.IPv6Address):
        # An IPv4 address written as IPv6 is that IPv4 address: mapped (::ffff:a.b.c.d),
        # NAT64 (64:ff9b::a.b.c.d) and 6to4 (2002:aabb:ccdd::), whose relay or gateway
        # delivers to the IPv4 address inside.
        embedded = (
            address.ipv4_mapped
            or address.sixtofour
            or (ipaddress.IPv4Address(int(address) & 0xFFFFFFFF) if address in _NAT64 else None)
        )
        if embedded is not None:
            return is_public(embedded)
        # Site-local (fec0::/10) was deprecated, not forgotten: networks still route it
        # inside, and Python's is_global calls it global.
        if address.is_site_local:
            return False
    return address.is_global and not (
        address.is_multicast or address.is_reserved or address.is_unspecified
    )


def connectable_addresses(host: str, port: int, allow_private: bool) -> list[str]:
    """The addresses of ``host``, resolved once; refused when any of them is not public
    (a name with one inside address among public ones is not a merchant's endpoint)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConnectError(f"host does not resolve: {host}") from exc
    # An address is text for AF_INET and AF_INET6; only a Python built without IPv6 gives
    # (int, bytes) for an IPv6 one, and it could not connect there anyway.
    found = [info[4][0] for info in infos]
    addresses = list(dict.fromkeys(a for a in found if isinstance(a, str)))
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
    except ConnectError as exc:
        raise UnsafeUrl(str(exc)) from exc
