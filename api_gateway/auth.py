"""X-SECRET-TOKEN → (brand, environment). Every tenant-owned query is scoped by both."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Header
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import select

from api_gateway.errors import Unauthorized
from connxt.secrets import hash_token
from connxt.ttl_cache import TtlCache
from storage.db import session_scope
from storage.models import ApiToken


@dataclass(frozen=True)
class Tenant:
    brand_id: str
    environment_id: str


def current_tenant(
    x_secret_token: str | None = Header(default=None, alias="X-SECRET-TOKEN"),
) -> Tenant:
    if not x_secret_token or len(x_secret_token) > 200:
        raise Unauthorized()
    # Lookup by SHA-256: the equality is on a hash of a 192-bit secret, so a timing
    # difference in the index lookup reveals nothing usable about any stored token.
    digest = hash_token(x_secret_token)
    tenant = _tenants.get_or_load(digest, lambda: _load_tenant(digest))
    if tenant is None:
        raise Unauthorized()
    return tenant


async def tenant_for(x_secret_token: str | None) -> Tenant:
    """As ``current_tenant``, for the hot path: a cached token costs no thread hop."""
    if not x_secret_token or len(x_secret_token) > 200:
        raise Unauthorized()
    digest = hash_token(x_secret_token)
    tenant = _tenants.get(digest)
    if tenant is None:
        tenant = await run_in_threadpool(current_tenant, x_secret_token)
    return tenant


# Known tokens are remembered briefly: a revocation takes effect within this many seconds.
TOKEN_CACHE_SECONDS = 10
_tenants: TtlCache[str, Tenant] = TtlCache(TOKEN_CACHE_SECONDS)


def _load_tenant(digest: str) -> Tenant | None:
    with session_scope() as session:
        row = session.execute(
            select(ApiToken.brand_id, ApiToken.environment_id).where(
                ApiToken.token_sha256 == digest, ApiToken.revoked_at.is_(None)
            )
        ).first()
    return None if row is None else Tenant(row.brand_id, row.environment_id)
