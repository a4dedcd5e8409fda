"""Does this key ring open what the database holds?

A second checkout of the project (or one that lost `.connxt/`) generates a new local key
and may find a database sealed with the old one. `connxt keys check` asks before anything
is written, opening the newest sealed value of each key id the database uses.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from connxt.secrets import KeyRing, SecretUnreadable, UnknownKey
from storage.models import Environment, Psp
from storage.notification_secrets import open_secret
from storage.psps import open_credential
from storage.tenants import notification_secret


def opens_what_is_stored(session: Session, ring: KeyRing) -> bool:
    environments = session.scalars(
        select(Environment)
        .where(Environment.notification_secret_sealed.is_not(None))
        .order_by(Environment.notification_secret_key_id, Environment.created_at.desc())
        .distinct(Environment.notification_secret_key_id)
    )
    psps = session.scalars(
        select(Psp)
        .order_by(Psp.credential_key_id, Psp.created_at.desc())
        .distinct(Psp.credential_key_id)
    )
    # A rotation's previous secrets, still signing during their overlap.
    previous = session.scalars(
        select(Environment)
        .where(Environment.notification_secret_previous_sealed.is_not(None))
        .order_by(Environment.notification_secret_previous_key_id, Environment.created_at.desc())
        .distinct(Environment.notification_secret_previous_key_id)
    )
    try:
        for environment in environments:
            notification_secret(ring, environment)
        for environment in previous:
            open_secret(
                ring,
                environment.id,
                environment.notification_secret_previous_key_id,
                environment.notification_secret_previous_sealed,
            )
        for psp in psps:
            open_credential(ring, psp)
    except (SecretUnreadable, UnknownKey):
        return False
    return True
