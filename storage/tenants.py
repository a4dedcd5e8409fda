"""Brands, environments and their API tokens."""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, func, or_, select, update
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
    token_id: int = 0  # the token's row: how it is named afterwards (tokens, revoke)


def _get_or_create_brand(session: Session, name: str) -> str:
    # Insert-or-ignore then read: two concurrent creates of one brand both end with its id.
    session.execute(insert(Brand).values(id=random_id("brn"), name=name).on_conflict_do_nothing())
    return session.execute(select(Brand.id).where(Brand.name == name)).scalar_one()


def notification_secret_aad(environment_id: str) -> bytes:
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
    # Inserted just above, or there before: the row exists either way.
    env = session.execute(
        select(Environment).where(Environment.brand_id == brand_id, Environment.name == environment)
    ).scalar_one()
    # The environment keeps its signing secret: merchants already verify with it.
    secret = notification_secret(ring, env)
    if secret is None:
        secret = new_notification_secret()
        sealed = ring.seal(secret.encode(), notification_secret_aad(env.id))
        env.notification_secret_key_id, env.notification_secret_sealed = sealed.key_id, sealed.blob
    token = new_token()
    row = ApiToken(brand_id=brand_id, environment_id=env.id, token_sha256=hash_token(token))
    session.add(row)
    session.flush()
    return IssuedTenant(brand_id, env.id, token, secret, row.id)


@dataclass(frozen=True)
class RotatedToken:
    brand_id: str
    environment_id: str
    token: str  # shown once, stored only as SHA-256
    retired: int  # tokens of the environment that stop working at ``retired_at``
    retired_at: datetime
    token_id: int = 0


def _active() -> ColumnElement[bool]:
    """Tokens that work now: never revoked, or set to stop at a later moment."""
    return or_(ApiToken.revoked_at.is_(None), ApiToken.revoked_at > func.now())


@dataclass(frozen=True)
class LiveToken:
    """A token that works now, and whose tenant it opens."""

    id: int
    brand_id: str
    environment_id: str
    stops_in: float | None  # seconds until it stops (rotated, in its grace); None: not set to

    @property
    def retiring(self) -> bool:
        """Rotated out and working only until its grace period ends."""
        return self.stops_in is not None


def find_token(
    session: Session, *, digest: str | None = None, token_id: int | None = None
) -> LiveToken | None:
    """The working token with this SHA-256 (how a request presents it) or this id (how a
    console session remembers it); None when there is none, or it was revoked.

    The lookup is by a hash of a 192-bit secret, so a timing difference in the index
    lookup reveals nothing usable about any stored token."""
    if (digest is None) == (token_id is None):
        raise TypeError("find_token takes a digest or a token id")
    which = ApiToken.token_sha256 == digest if digest is not None else ApiToken.id == token_id
    row = session.execute(
        select(
            ApiToken.id, ApiToken.brand_id, ApiToken.environment_id, ApiToken.revoked_at, func.now()
        ).where(which, _active())
    ).first()
    if row is None:
        return None
    stops_in = None if row.revoked_at is None else (row.revoked_at - row[4]).total_seconds()
    return LiveToken(row.id, row.brand_id, row.environment_id, stops_in)


@dataclass(frozen=True)
class TokenRow:
    """An API token as it may be shown: never the token, nor its digest."""

    id: int
    brand_id: str
    environment_id: str
    created_at: datetime
    revoked_at: datetime | None  # in the future: a rotation's grace period


def _token_row(row: ApiToken) -> TokenRow:
    return TokenRow(row.id, row.brand_id, row.environment_id, row.created_at, row.revoked_at)


def revoke_token(session: Session, token: str) -> TokenRow | None:
    """Stop a token now; None when no working token matches."""
    return _revoke(session, ApiToken.token_sha256 == hash_token(token))


def revoke_token_id(session: Session, token_id: int) -> TokenRow | None:
    """Stop the token of that row now; None when it is not a working token."""
    return _revoke(session, ApiToken.id == token_id)


def _revoke(session: Session, which: ColumnElement[bool]) -> TokenRow | None:
    revoked = session.scalars(
        update(ApiToken).where(which, _active()).values(revoked_at=func.now()).returning(ApiToken)
    ).first()
    return _token_row(revoked) if revoked is not None else None


def list_tokens(session: Session, environment_id: str) -> list[TokenRow]:
    """The environment's tokens, oldest first, revoked ones included."""
    rows = session.scalars(
        select(ApiToken)
        .where(ApiToken.environment_id == environment_id)
        .order_by(ApiToken.created_at, ApiToken.id)
    )
    return [_token_row(row) for row in rows]


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
    row = ApiToken(brand_id=env.brand_id, environment_id=env.id, token_sha256=hash_token(token))
    session.add(row)
    session.flush()
    retired_at = session.execute(select(stop_at)).scalar_one()
    return RotatedToken(env.brand_id, env.id, token, len(retired), retired_at, row.id)


def issued_token_digests(session: Session, since: datetime | None) -> tuple[list[str], datetime]:
    """The SHA-256 of every token issued since ``since`` (all, when None), revoked ones
    included, and the database's clock to ask from next time. Reads rows created a minute
    before ``since`` again: a token's ``created_at`` is its transaction's start, and that
    transaction may have committed after the last read."""
    # One round trip: an aggregate answers one row even when no token matches.
    query = select(func.array_agg(ApiToken.token_sha256), func.now())
    if since is not None:
        query = query.where(ApiToken.created_at >= since - timedelta(minutes=1))
    digests, now = session.execute(query).one()
    return list(digests or ()), now


def find_environment(session: Session, brand: str, environment: str) -> Environment | None:
    return session.scalar(
        select(Environment)
        .join(Brand, Brand.id == Environment.brand_id)
        .where(Brand.name == brand, Environment.name == environment)
    )


def return_url(session: Session, environment_id: str) -> str | None:
    """The environment's page for customers coming back from a PSP, if it has one."""
    return session.scalar(select(Environment.return_url).where(Environment.id == environment_id))


def notification_secret(ring: KeyRing, env: Environment) -> str | None:
    if env.notification_secret_sealed is None or env.notification_secret_key_id is None:
        return None
    sealed = Sealed(env.notification_secret_key_id, env.notification_secret_sealed)
    return ring.open(sealed, notification_secret_aad(env.id)).decode()
