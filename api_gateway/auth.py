"""X-SECRET-TOKEN → (brand, environment). Every tenant-owned query is scoped by both.

Lookups are cached both ways, per process. A known token is remembered for at most
``TOKEN_CACHE_SECONDS`` (and, when it was read with a stop already set, never past that
moment), so a revocation, or the end of a rotation's grace period, holds everywhere within
that bound.
An unknown token is remembered too, so repeating it costs no query; and a client address
that keeps presenting new unknown tokens is refused without a lookup (429) until its
window ends (connxt.rate_limit), so a flood of guesses cannot become a flood of queries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import structlog
from fastapi import Header, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import func, or_, select

from api_gateway.errors import TooManyRequests, Unauthorized
from connxt.rate_limit import FailureLimiter
from connxt.secrets import hash_token
from connxt.settings import get_settings
from connxt.ttl_cache import TtlCache
from storage.db import session_scope
from storage.models import ApiToken

log = structlog.get_logger()


@dataclass(frozen=True)
class Tenant:
    brand_id: str
    environment_id: str


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


def client_address(scope: dict) -> str | None:
    """The peer's address (behind a trusted proxy, uvicorn has put the forwarded one here)."""
    client = scope.get("client")
    return client[0] if client else None


# Known tokens are remembered briefly: a revocation takes effect within this many seconds.
TOKEN_CACHE_SECONDS = 10
_tenants: TtlCache[str, Tenant] = TtlCache(TOKEN_CACHE_SECONDS)
# Unknown tokens too. A token is random and issued before anyone can present it, so one
# that was unknown never becomes known: the bound only limits the memory it takes.
UNKNOWN_CACHE_SECONDS = 30
_unknown: TtlCache[str, bool] = TtlCache(UNKNOWN_CACHE_SECONDS, max_items=50_000)
_settings = get_settings()
_failures = FailureLimiter(_settings.auth_failure_limit, _settings.auth_failure_window_seconds)


def _tenant(x_secret_token: str | None, client: str | None) -> Tenant:
    if not x_secret_token or len(x_secret_token) > 200:
        raise Unauthorized()
    # Lookup by SHA-256: the equality is on a hash of a 192-bit secret, so a timing
    # difference in the index lookup reveals nothing usable about any stored token.
    digest = hash_token(x_secret_token)
    tenant = _tenants.get(digest)
    if tenant is not None:
        return tenant
    if _unknown.get(digest):
        raise Unauthorized()
    key = client or "unknown"
    wait = _failures.blocked_for(key)
    if wait:
        raise TooManyRequests(
            "Too many requests with unknown tokens from this address",
            headers={"Retry-After": str(math.ceil(wait))},
        )
    found = _load_tenant(digest)
    if found is None:
        _unknown.put(digest, True)
        _failures.record(key)
        if _failures.blocked_for(key):
            log.warning("auth.client_blocked", client=key)
        raise Unauthorized()
    tenant, stops_in = found
    _tenants.put(digest, tenant, stops_in)
    return tenant


def _load_tenant(digest: str) -> tuple[Tenant, float | None] | None:
    """The token's tenant and the seconds until it stops working (None: not scheduled)."""
    with session_scope() as session:
        row = session.execute(
            select(ApiToken.brand_id, ApiToken.environment_id, ApiToken.revoked_at, func.now())
            .where(ApiToken.token_sha256 == digest)
            # A rotated token works until its grace period ends: revoked_at in the future.
            .where(or_(ApiToken.revoked_at.is_(None), ApiToken.revoked_at > func.now()))
        ).first()
    if row is None:
        return None
    stops_in = None if row.revoked_at is None else (row.revoked_at - row[3]).total_seconds()
    return Tenant(row.brand_id, row.environment_id), stops_in


def forget_cached_tokens() -> None:
    """Drop what this process remembers about tokens and failures (tests, operations)."""
    _tenants.clear()
    _unknown.clear()
    _failures.clear()
