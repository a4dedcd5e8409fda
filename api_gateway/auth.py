"""X-SECRET-TOKEN → (brand, environment). Every tenant-owned query is scoped by both.

Lookups are cached both ways, per process. A known token is remembered for at most
``TOKEN_CACHE_SECONDS`` (and, when it was read with a stop already set, never past that
moment), so a revocation, or the end of a rotation's grace period, holds everywhere within
that bound. An unknown token is remembered too, so repeating it costs nothing.

A flood of guesses never becomes a flood of queries, and never locks out a valid token:
each process keeps the digests of every token ever issued (``IssuedTokens``: read once,
then only what was issued since, at most once per ``ISSUED_READ_INTERVAL_SECONDS``), so a
token that was never issued is refused without a lookup; only an issued one is looked up. A
client address that presents more than ``CONNXT_AUTH_FAILURE_LIMIT`` failing tokens per
window, counted across the fleet (connxt.rate_limit), is answered 429 instead of 401: the
limit slows a guesser down; it never applies to a token that works, since clients behind
one NAT or proxy share an address. Behind trusted proxies (``CONNXT_TRUSTED_PROXIES``)
the address is the client's own, from ``X-Forwarded-For``.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import NoReturn

import structlog
from fastapi import Header, Request
from fastapi.concurrency import run_in_threadpool
from starlette.types import Scope

from api_gateway.errors import TooManyRequests, Unauthorized
from connxt.rate_limit import FleetFailureLimiter
from connxt.redis import get_redis
from connxt.secrets import hash_token
from connxt.settings import get_settings
from connxt.ttl_cache import TtlCache
from storage.db import session_scope
from storage.tenants import find_token, issued_token_digests

log = structlog.get_logger()


@dataclass(frozen=True)
class Tenant:
    brand_id: str
    environment_id: str
    token_id: int = 0  # the token's row: who acted, in the audit trail

    @property
    def actor(self) -> str:
        return f"api token #{self.token_id}"


def current_tenant(
    request: Request,
    x_secret_token: str | None = Header(default=None, alias="X-SECRET-TOKEN"),
) -> Tenant:
    return _tenant(x_secret_token, client_address(request.scope))


async def tenant_for(x_secret_token: str | None, client: str | None) -> Tenant:
    """As ``current_tenant``, for the hot path: a cached token, good or bad, costs no
    thread hop."""
    if not x_secret_token or len(x_secret_token) > 200:
        raise Unauthorized()
    digest = hash_token(x_secret_token)
    tenant = _tenants.get(digest)
    if tenant is None:
        if _unknown.get(digest):
            raise Unauthorized()  # a repeated bad token: no thread hop, no query
        tenant = await run_in_threadpool(_tenant, x_secret_token, client)
    return tenant


def client_address(scope: Scope) -> str | None:
    """The client's address: the peer's, or behind a trusted proxy the one it forwarded
    (uvicorn's proxy-headers layer puts it here, for CONNXT_TRUSTED_PROXIES only)."""
    client = scope.get("client")
    return client[0] if client else None


# Known tokens are remembered briefly: a revocation takes effect within this many seconds.
TOKEN_CACHE_SECONDS = 10
_tenants: TtlCache[str, Tenant] = TtlCache(TOKEN_CACHE_SECONDS)
# Unknown tokens too. A token is random and issued before anyone can present it, so one
# that was unknown never becomes known: the bound only limits the memory it takes.
UNKNOWN_CACHE_SECONDS = 30
_unknown: TtlCache[str, bool] = TtlCache(UNKNOWN_CACHE_SECONDS, max_items=50_000)
# The least time between two reads of the tokens issued since: a flood of guesses costs a
# process at most 1 / this many reads a second, each guess waits about this long, and a
# token issued a moment ago elsewhere is found by the read its presentation waits for.
ISSUED_READ_INTERVAL_SECONDS = 0.05


class IssuedTokens:
    """The first 64 bits of every issued token's digest: enough to tell a guess (a 2^-64
    chance of passing, and then the database still decides) from a token to look up. A
    few thousand tokens are a few hundred kilobytes.

    A digest it does not hold is judged only after a read that began after it was
    presented (reads are shared: everyone who arrived before one began is answered by
    it), so a token issued a moment ago by another process is never refused."""

    def __init__(self) -> None:
        self._prefixes: set[int] = set()
        self._since: datetime | None = None
        self._read_began = float("-inf")
        self._lock = threading.Lock()

    def may_hold(self, digest: str) -> bool:
        prefix = int(digest[:16], 16)
        if prefix in self._prefixes:
            return True
        presented = time.monotonic()
        with self._lock:
            if self._read_began <= presented:  # no read began since: make one
                pause = self._read_began + ISSUED_READ_INTERVAL_SECONDS - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                self._read_began = time.monotonic()
                with session_scope() as session:
                    digests, self._since = issued_token_digests(session, self._since)
                self._prefixes.update(int(digest[:16], 16) for digest in digests)
        return prefix in self._prefixes

    def clear(self) -> None:
        with self._lock:
            self._prefixes.clear()
            self._since, self._read_began = None, float("-inf")


_issued = IssuedTokens()
_settings = get_settings()
_failures = FleetFailureLimiter(
    get_redis(),
    _settings.broker_key_prefix,
    _settings.auth_failure_limit,
    _settings.auth_failure_window_seconds,
)


def _tenant(x_secret_token: str | None, client: str | None) -> Tenant:
    if not x_secret_token or len(x_secret_token) > 200:
        raise Unauthorized()
    digest = hash_token(x_secret_token)
    tenant = _tenants.get(digest)
    if tenant is not None:
        return tenant
    if _unknown.get(digest):
        raise Unauthorized()
    if not _issued.may_hold(digest):
        _unknown.put(digest, True)  # never issued, so never will be
        _refuse(client or "unknown")
    found = _load_tenant(digest)
    if found is None:  # issued, and revoked or past its rotation's grace period
        _unknown.put(digest, True)
        _refuse(client or "unknown")
    tenant, stops_in = found
    _tenants.put(digest, tenant, stops_in)
    return tenant


def _refuse(client: str) -> NoReturn:
    """401, or 429 for an address past its limit of failures in this window."""
    wait = _failures.fail(client)
    if wait:
        log.warning("auth.client_limited", client=client)
        raise TooManyRequests(
            "Too many requests with unknown tokens from this address",
            headers={"Retry-After": str(math.ceil(wait))},
        )
    raise Unauthorized()


def _load_tenant(digest: str) -> tuple[Tenant, float | None] | None:
    """The token's tenant and the seconds until it stops working (None: not scheduled). A
    rotated token works until its grace period ends."""
    with session_scope() as session:
        token = find_token(session, digest=digest)
    if token is None:
        return None
    return Tenant(token.brand_id, token.environment_id, token.id), token.stops_in


def forget_cached_tokens() -> None:
    """Drop what this process remembers about tokens and failures (tests, operations)."""
    _tenants.clear()
    _unknown.clear()
    _issued.clear()
    _failures.clear()
