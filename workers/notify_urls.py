"""Merchant notification URLs: what we agree to POST to.

Checked when a merchant sets the URL and again before each delivery, because DNS can
change in between (a name that resolved to a public address may later point inside).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from connxt.settings import get_settings


class UnsafeUrl(ValueError):
    """The URL is not one we deliver to."""


def check_merchant_url(url: str) -> None:
    settings = get_settings()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeUrl("must be an absolute http(s) URL")
    if settings.is_production and parts.scheme != "https":
        raise UnsafeUrl("must use https in production")
    if parts.username or parts.password:
        raise UnsafeUrl("must not carry credentials")
    allow_private = settings.allow_private_webhook_urls and not settings.is_production
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UnsafeUrl(f"host does not resolve: {parts.hostname}") from exc
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise UnsafeUrl("resolves to a private, loopback or reserved address")
