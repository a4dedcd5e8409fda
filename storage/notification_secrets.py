"""The secrets an environment's merchant notifications are signed with, and their rotation.

An environment has one current secret. Rotating it makes a new one current and keeps the
previous one for an overlap: until then every notification carries both signatures
(Standard Webhooks: ``v1,<new> v1,<previous>``), so the merchant can switch to the new
secret whenever it is ready, and after it only the new one. Both are sealed under the same
associated data (``env-webhook-secret:<environment id>``), so the current one moves to the
previous slot as it is, without being opened.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from connxt.secrets import KeyRing, Sealed
from storage.models import Environment
from storage.tenants import new_notification_secret, notification_secret_aad


@dataclass(frozen=True)
class SigningSecrets:
    """What an environment's notifications are signed with."""

    current: str | None  # None: the environment has none (never signed with an empty key)
    previous: str | None
    previous_until: datetime | None

    def in_use(self, now: datetime) -> list[str]:
        """The current secret, then the previous one while its overlap lasts."""
        found = [self.current] if self.current else []
        if self.previous and self.previous_until is not None and now < self.previous_until:
            found.append(self.previous)
        return found


def open_secret(
    ring: KeyRing, environment_id: str, key_id: str | None, blob: bytes | None
) -> str | None:
    if key_id is None or blob is None:
        return None
    return ring.open(Sealed(key_id, blob), notification_secret_aad(environment_id)).decode()


def signing_secrets(session: Session, ring: KeyRing, environment_id: str) -> SigningSecrets:
    row = session.execute(
        select(
            Environment.notification_secret_key_id,
            Environment.notification_secret_sealed,
            Environment.notification_secret_previous_key_id,
            Environment.notification_secret_previous_sealed,
            Environment.notification_secret_previous_until,
        ).where(Environment.id == environment_id)
    ).one_or_none()
    if row is None:
        return SigningSecrets(None, None, None)
    return SigningSecrets(
        open_secret(ring, environment_id, row[0], row[1]),
        open_secret(ring, environment_id, row[2], row[3]),
        row[4],
    )


@dataclass(frozen=True)
class RotatedSecret:
    brand_id: str
    environment_id: str
    secret: str  # shown once, stored sealed
    key_id: str  # the key ring's key it is sealed under
    previous_until: datetime | None  # the previous secret signs too until then; None: not at all
    had_one: bool  # False: the environment had no secret before


def rotate_notification_secret(
    session: Session, ring: KeyRing, environment: Environment, overlap_seconds: int
) -> RotatedSecret:
    """A new current secret; the one it replaces keeps signing for ``overlap_seconds``
    (0: not at all). A previous secret still in an earlier overlap stops now: at most two
    signatures are ever sent. The row is locked, so two rotations at once do not both
    keep the same previous secret."""
    env = session.scalars(
        select(Environment)
        .where(Environment.id == environment.id)
        .with_for_update()
        .execution_options(populate_existing=True)  # as it is now, not as first read
    ).one()
    had_one = env.notification_secret_sealed is not None and env.notification_secret_key_id
    if had_one and overlap_seconds > 0:
        env.notification_secret_previous_key_id = env.notification_secret_key_id
        env.notification_secret_previous_sealed = env.notification_secret_sealed
        env.notification_secret_previous_until = func.now() + timedelta(seconds=overlap_seconds)
    else:
        env.notification_secret_previous_key_id = None
        env.notification_secret_previous_sealed = None
        env.notification_secret_previous_until = None
    secret = new_notification_secret()
    sealed = ring.seal(secret.encode(), notification_secret_aad(env.id))
    env.notification_secret_key_id, env.notification_secret_sealed = sealed.key_id, sealed.blob
    session.flush()
    session.refresh(env, ["notification_secret_previous_until"])
    return RotatedSecret(
        env.brand_id,
        env.id,
        secret,
        sealed.key_id,
        env.notification_secret_previous_until,
        bool(had_one),
    )
