"""X-SECRET-TOKEN → (brand, environment). Every tenant-owned query is scoped by both."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Header
from sqlalchemy import select

from api_gateway.errors import Unauthorized
from connxt.secrets import hash_token
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
    with session_scope() as session:
        row = session.execute(
            select(ApiToken.brand_id, ApiToken.environment_id).where(
                ApiToken.token_sha256 == digest, ApiToken.revoked_at.is_(None)
            )
        ).first()
    if row is None:
        raise Unauthorized()
    return Tenant(brand_id=row.brand_id, environment_id=row.environment_id)
