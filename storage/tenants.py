"""Brands, environments and their API tokens."""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from connxt.ids import new_token, random_id
from connxt.secrets import KeyRing, Sealed, hash_token
from storage.models import ApiToken, Brand, Environment


@dataclass(frozen=True)
class IssuedTenant:
    brand_id: str
    environment_id: str
    token: str  # shown once, stored only as SHA-256
    notification_secret: str  # shown once, stored sealed


def _get_or_create_brand(session: Session, name: str) -> str:
    # Insert-or-ignore then read: two concurrent creates of one brand both end with its id.
    session.execute(insert(Brand).values(id=random_id("brn"), name=name).on_conflict_do_nothing())
    return session.scalar(select(Brand.id).where(Brand.name == name))


def _secret_aad(environment_id: str) -> bytes:
    return f"env-webhook-secret:{environment_id}".encode()


def new_notification_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def create_tenant(session: Session, ring: KeyRing, brand: str, environment: str) -> IssuedTenant:
    """Reuse the brand and environment when they exist; always issue a fresh token."""
    brand_id = _get_or_create_brand(session, brand)
    session.execute(
        insert(Environment)
        .values(id=random_id("env"), brand_id=brand_id, name=environment)
        .on_conflict_do_nothing()
    )
    env = session.scalar(
        select(Environment).where(Environment.brand_id == brand_id, Environment.name == environment)
    )
    # The environment keeps its signing secret: merchants already verify with it.
    secret = notification_secret(ring, env)
    if secret is None:
        secret = new_notification_secret()
        sealed = ring.seal(secret.encode(), _secret_aad(env.id))
        env.notification_secret_key_id, env.notification_secret_sealed = sealed.key_id, sealed.blob
    token = new_token()
    session.add(ApiToken(brand_id=brand_id, environment_id=env.id, token_sha256=hash_token(token)))
    session.flush()
    return IssuedTenant(brand_id, env.id, token, secret)


@dataclass(frozen=True)
class RotatedToken:
    brand_id: str
    environment_id: str
    token: str  # shown once, stored only as SHA-256
    retired: int  # tokens of the environment that stop working at ``retired_at``
    retired_at: datetime


def _active():
    """Tokens that work now: never revoked, or set to stop at a later moment."""
    return or_(ApiToken.revoked_at.is_(None), ApiToken.revoked_at > func.now())


def revoke_token(session: Session, token: str) -> bool:
    """Stop a token now; False when no working token matches."""
    revoked = session.execute(
        update(ApiToken)
        .where(ApiToken.token_sha256 == hash_token(token), _active())
        .values(revoked_at=func.now())
        .returning(ApiToken.id)
    ).first()
    return revoked is not None


def rotate_tokens(session: Session, env: Environment, grace_seconds: int) -> RotatedToken:
    """Issue a new token for the environment; every token working now stops after the grace
    period (or sooner, if it was already set to)."""
    stop_at = func.now() + timedelta(seconds=grace_seconds)
    retired = session.execute(
        update(ApiToken)
        .where(ApiToken.environment_id == env.id, _active())
        .values(revoked_at=func.least(func.coalesce(ApiToken.revoked_at, stop_at), stop_at))
        .returning(ApiToken.id)
    ).all()
    token = new_token()
    session.add(
        ApiToken(brand_id=env.brand_id, environment_id=env.id, token_sha256=hash_token(token))
    )
    session.flush()
    retired_at = session.scalar(select(stop_at))
    return RotatedToken(env.brand_id, env.id, token, len(retired), retired_at)


def find_environment(session: Session, brand: str, environment: str) -> Environment | None:
    return session.scalar(
        select(Environment)
        .join(Brand, Brand.id == Environment.brand_id)
        .where(Brand.name == brand, Environment.name == environment)
    )


def notification_secret(ring: KeyRing, env: Environment) -> str | None:
    if env.notification_secret_sealed is None or env.notification_secret_key_id is None:
        return None
    sealed = Sealed(env.notification_secret_key_id, env.notification_secret_sealed)
    return ring.open(sealed, _secret_aad(env.id)).decode()
